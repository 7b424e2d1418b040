//! The Bicep files parse, and modules line up with what they declare.

mod common;

use common::assert_clean;
use hub2lake_infra_check::{check_module_wiring, check_syntax, repo_root, Infra};

#[test]
fn every_bicep_file_under_infra_parses_without_errors() {
    assert_clean("syntax check", &check_syntax(&repo_root()));
}

#[test]
fn infra_holds_main_and_its_modules() {
    let infra = Infra::load(&repo_root()).unwrap_or_else(|p| panic!("{}", hub2lake_infra_check::report(&p)));
    for file in [
        "main.bicep",
        "modules/identity.bicep",
        "modules/monitoring.bicep",
        "modules/host-storage.bicep",
        "modules/lake-storage.bicep",
        "modules/event-hubs.bicep",
        "modules/function-app.bicep",
        "modules/function-site-flex.bicep",
        "modules/function-site-premium.bicep",
    ] {
        assert!(infra.file(file).is_some(), "infra/{file} is missing");
    }
}

#[test]
fn module_paths_parameters_and_outputs_line_up() {
    assert_clean("module wiring check", &check_module_wiring(&repo_root()));
}
