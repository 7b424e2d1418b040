//! Security properties, asserted on the parsed Bicep.

mod common;

use common::assert_clean;
use hub2lake_infra_check::{check_role_assignments, check_security, literal, lookup, repo_root, Infra, Literal};

fn infra() -> Infra {
    Infra::load(&repo_root()).unwrap_or_else(|p| panic!("{}", hub2lake_infra_check::report(&p)))
}

#[test]
fn storage_event_hubs_insights_and_sites_meet_the_security_baseline() {
    assert_clean("security check", &check_security(&repo_root()));
}

#[test]
fn lake_account_is_adls_gen2_without_shared_keys() {
    let infra = infra();
    let file = infra.file("modules/lake-storage.bicep").expect("lake module");
    let accounts: Vec<_> = file
        .resources()
        .into_iter()
        .filter(|r| r.type_name == "Microsoft.Storage/storageAccounts" && !r.existing)
        .collect();
    assert_eq!(accounts.len(), 1, "the lake module creates exactly one account");
    let account = &accounts[0];
    let prop = |name: &str| lookup(file, account.body, &["properties", name]).and_then(|v| literal(file, v));
    assert_eq!(prop("isHnsEnabled"), Some(Literal::Bool(true)));
    assert_eq!(prop("allowSharedKeyAccess"), Some(Literal::Bool(false)));
    assert_eq!(prop("minimumTlsVersion"), Some(Literal::Str("TLS1_2".into())));
    assert_eq!(prop("supportsHttpsTrafficOnly"), Some(Literal::Bool(true)));
    assert_eq!(prop("allowBlobPublicAccess"), Some(Literal::Bool(false)));
}

#[test]
fn host_storage_is_a_separate_account_without_hierarchical_namespace() {
    let infra = infra();
    let file = infra.file("modules/host-storage.bicep").expect("host storage module");
    let account = file
        .resources()
        .into_iter()
        .find(|r| r.type_name == "Microsoft.Storage/storageAccounts" && !r.existing)
        .expect("host storage account");
    let hns = lookup(file, account.body, &["properties", "isHnsEnabled"]).and_then(|v| literal(file, v));
    assert_ne!(
        hns,
        Some(Literal::Bool(true)),
        "host storage should be a flat-namespace account"
    );
}

#[test]
fn function_app_sites_run_as_a_user_assigned_identity() {
    let infra = infra();
    let sites: Vec<_> = infra
        .resources()
        .into_iter()
        .filter(|(_, r)| r.type_name == "Microsoft.Web/sites" && !r.existing)
        .collect();
    assert_eq!(sites.len(), 2, "one Flex and one Elastic Premium site definition");
    for (file, site) in sites {
        let kind = lookup(file, site.body, &["identity", "type"]).and_then(|v| literal(file, v));
        assert_eq!(
            kind,
            Some(Literal::Str("UserAssigned".into())),
            "{} `{}`",
            file.rel,
            site.symbol
        );
    }
}

#[test]
fn every_required_role_is_assigned_with_a_deterministic_guid_name() {
    assert_clean("role assignment check", &check_role_assignments(&repo_root()));
}
