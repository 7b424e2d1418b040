//! The app settings in the Bicep cover what the Functions host and the handler read.

mod common;

use common::assert_clean;
use hub2lake_infra_check::{check_app_settings, check_hub2lake_settings_known, collect_app_settings, repo_root, Infra};

#[test]
fn app_settings_cover_what_host_json_function_json_and_the_handler_need() {
    // Reads host.json and functions/*/function.json of the repository: fails if
    // they are missing or reference a %SETTING% the Bicep does not set.
    assert_clean("app settings check", &check_app_settings(&repo_root()));
}

#[test]
fn hub2lake_app_settings_are_settings_the_handler_knows() {
    assert_clean("HUB2LAKE_* check", &check_hub2lake_settings_known(&repo_root()));
}

#[test]
fn runtime_is_custom_on_both_plans_and_extension_version_only_on_premium() {
    let infra = Infra::load(&repo_root()).unwrap_or_else(|p| panic!("{}", hub2lake_infra_check::report(&p)));
    let (settings, problems) = collect_app_settings(&infra);
    assert_clean("collecting app settings", &problems);
    // Elastic Premium: app settings; Flex: functionAppConfig.runtime (checked by check_app_settings).
    assert_eq!(
        settings.possible.get("FUNCTIONS_WORKER_RUNTIME"),
        Some(&Some("custom".to_string()))
    );
    assert!(
        !settings.always.contains_key("FUNCTIONS_WORKER_RUNTIME"),
        "Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME; it must be premium-only"
    );
    assert_eq!(
        settings.possible.get("FUNCTIONS_EXTENSION_VERSION"),
        Some(&Some("~4".to_string()))
    );
    assert!(!settings.always.contains_key("FUNCTIONS_EXTENSION_VERSION"));
    for (key, value) in [
        ("AzureWebJobsStorage__credential", "managedidentity"),
        ("EventHubConnection__credential", "managedidentity"),
        ("HUB2LAKE_LOG_FORMAT", "json"),
    ] {
        assert_eq!(settings.always.get(key), Some(&Some(value.to_string())), "{key}");
    }
}

#[test]
fn the_log_stream_is_wired_to_the_log_hub_with_the_app_identity() {
    let infra = Infra::load(&repo_root()).unwrap_or_else(|p| panic!("{}", hub2lake_infra_check::report(&p)));
    let (settings, problems) = collect_app_settings(&infra);
    assert_clean("collecting app settings", &problems);
    for key in ["HUB2LAKE_LOG_EVENTHUB_NAMESPACE", "HUB2LAKE_LOG_EVENTHUB_NAME"] {
        assert!(settings.possible.contains_key(key), "{key} is not set");
    }
    // No key-based log target: the namespace and the identity, never a connection string.
    assert!(!settings
        .possible
        .contains_key("HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING"));
    let hubs = infra.file("modules/event-hubs.bicep").expect("event-hubs module");
    let source = std::fs::read_to_string(repo_root().join("infra/modules/event-hubs.bicep")).unwrap();
    assert!(source.contains("param logEventHubName string = 'application-logs'"));
    assert!(source.contains("param logConsumerGroupName string = 'adx'"));
    let sender = hubs
        .resources()
        .into_iter()
        .find(|r| r.symbol == "logSender")
        .expect("a role assignment for the log stream's sender");
    let text = hubs.text(sender.body);
    assert!(
        text.contains("scope: targetLogHub")
            && text.contains("identityPrincipalId")
            && text.contains("eventHubsDataSenderRoleId"),
        "{text}"
    );
}
