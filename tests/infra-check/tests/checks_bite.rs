//! The checks bite: each one passes on an intact copy of infra/ and reports the
//! problem once the copy is broken on purpose.

mod common;

use common::{assert_clean, assert_reported, Sandbox};
use hub2lake_infra_check::{
    check_all, check_app_settings, check_azd_project, check_hub2lake_settings_known, check_module_wiring,
    check_parameters_file, check_role_assignments, check_security, check_syntax,
};

#[test]
fn an_intact_copy_passes_every_check() {
    let sandbox = Sandbox::new();
    assert_clean("check_all on an intact copy", &check_all(sandbox.root()));
}

#[test]
fn syntax_check_reports_file_line_and_column_of_the_first_error() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/identity.bicep";
    let text = sandbox.read(rel);
    let line = text.lines().position(|l| l.starts_with("output clientId")).unwrap() + 1;
    sandbox.replace(
        rel,
        "output clientId string = identity.properties.clientId",
        "output clientId string = identity.properties.clientId +",
    );
    let problems = check_syntax(sandbox.root());
    assert_eq!(problems.len(), 1, "one broken file, one problem: {problems:?}");
    let problem = &problems[0];
    assert_eq!(problem.file, rel);
    assert!(
        problem.line == line || problem.line == line + 1,
        "error reported at line {}, broken line is {line}",
        problem.line
    );
    assert!(problem.col >= 1);
    assert!(problem.to_string().starts_with(&format!("{rel}:{}:", problem.line)));
}

#[test]
fn syntax_check_reports_an_unclosed_object() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/monitoring.bicep";
    let text = sandbox.read(rel);
    sandbox.write(rel, &format!("{text}\nvar broken = {{\n  a: 1\n"));
    assert_reported(&check_syntax(sandbox.root()), &[rel, "syntax error"]);
}

#[test]
fn security_check_catches_shared_key_access_turned_on_for_the_lake() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/lake-storage.bicep";
    sandbox.replace(rel, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true");
    assert_reported(&check_security(sandbox.root()), &[rel, "allowSharedKeyAccess is true"]);
}

#[test]
fn security_check_catches_a_lake_without_hierarchical_namespace() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/lake-storage.bicep",
        "isHnsEnabled: true",
        "isHnsEnabled: false",
    );
    assert_reported(&check_security(sandbox.root()), &["isHnsEnabled = true"]);
}

#[test]
fn security_check_catches_a_missing_or_parameterised_tls_version() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/host-storage.bicep";
    sandbox.replace(rel, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: tlsVersion");
    assert_reported(
        &check_security(sandbox.root()),
        &[rel, "minimumTlsVersion must be the literal"],
    );
    sandbox.replace(rel, "    minimumTlsVersion: tlsVersion\n", "");
    assert_reported(
        &check_security(sandbox.root()),
        &[rel, "must set properties.minimumTlsVersion"],
    );
}

#[test]
fn security_check_catches_public_blobs_http_and_local_auth() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/host-storage.bicep",
        "allowBlobPublicAccess: false",
        "allowBlobPublicAccess: true",
    );
    sandbox.replace(
        "infra/modules/lake-storage.bicep",
        "supportsHttpsTrafficOnly: true",
        "supportsHttpsTrafficOnly: false",
    );
    sandbox.replace(
        "infra/modules/event-hubs.bicep",
        "disableLocalAuth: true",
        "disableLocalAuth: false",
    );
    sandbox.replace(
        "infra/modules/monitoring.bicep",
        "DisableLocalAuth: true",
        "DisableLocalAuth: false",
    );
    let problems = check_security(sandbox.root());
    assert_reported(&problems, &["host-storage.bicep", "allowBlobPublicAccess is true"]);
    assert_reported(&problems, &["lake-storage.bicep", "supportsHttpsTrafficOnly is false"]);
    assert_reported(&problems, &["event-hubs.bicep", "disableLocalAuth is false"]);
    assert_reported(&problems, &["monitoring.bicep", "DisableLocalAuth is false"]);
}

#[test]
fn security_check_catches_a_function_app_without_its_user_assigned_identity() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/function-site-flex.bicep";
    sandbox.replace(rel, "type: 'UserAssigned'", "type: 'SystemAssigned'");
    assert_reported(
        &check_security(sandbox.root()),
        &[rel, "identity.type is 'SystemAssigned'"],
    );
}

#[test]
fn role_check_catches_a_dropped_role_assignment() {
    let sandbox = Sandbox::new();
    sandbox.cut(
        "infra/modules/event-hubs.bicep",
        "resource receiver ",
        "resource sender ",
    );
    assert_reported(
        &check_role_assignments(sandbox.root()),
        &["Azure Event Hubs Data Receiver"],
    );
}

#[test]
fn role_check_catches_a_non_deterministic_or_fixed_assignment_name() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/monitoring.bicep";
    sandbox.replace(
        rel,
        "name: guid(applicationInsights.id, identityPrincipalId, monitoringMetricsPublisherRoleId)",
        "name: 'metrics-publisher'",
    );
    sandbox.replace(
        "infra/modules/host-storage.bicep",
        "name: guid(storage.id, identityPrincipalId, storageBlobDataOwnerRoleId)",
        "name: guid(storage.id, newGuid())",
    );
    let problems = check_role_assignments(sandbox.root());
    assert_reported(&problems, &[rel, "deterministic guid"]);
    assert_reported(&problems, &["host-storage.bicep", "newGuid"]);
}

#[test]
fn role_check_catches_an_assignment_on_the_wrong_scope_or_an_unknown_role() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/lake-storage.bicep",
        "  scope: lakeContainer\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)",
        "  scope: account\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)",
    );
    sandbox.replace(
        "infra/modules/monitoring.bicep",
        "var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'",
        "var monitoringMetricsPublisherRoleId = 'monitoring-metrics-publisher'",
    );
    let problems = check_role_assignments(sandbox.root());
    assert_reported(
        &problems,
        &[
            "Storage Blob Data Contributor",
            "scoped to Microsoft.Storage/storageAccounts",
        ],
    );
    assert_reported(
        &problems,
        &["monitoring.bicep", "does not resolve to a role definition GUID"],
    );
}

#[test]
fn role_check_catches_a_required_role_granted_to_someone_else_or_conditionally() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/lake-storage.bicep";
    sandbox.replace(
        rel,
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)\n    principalId: identityPrincipalId",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)\n    principalId: readerPrincipalId",
    );
    sandbox.replace(
        "infra/modules/event-hubs.bicep",
        "resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createNamespace) {",
    );
    let problems = check_role_assignments(sandbox.root());
    assert_reported(
        &problems,
        &[rel, "Storage Blob Data Contributor", "`readerPrincipalId`"],
    );
    assert_reported(&problems, &["Azure Event Hubs Data Receiver", "conditional"]);
}

#[test]
fn role_check_catches_a_broad_role() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/host-storage.bicep",
        "var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
        "var storageTableDataContributorRoleId = 'b24988ac-6180-42a0-ab88-20f7382dd24c'",
    );
    assert_reported(&check_role_assignments(sandbox.root()), &["grants Contributor"]);
}

#[test]
fn app_settings_check_catches_a_setting_function_json_references_but_bicep_omits() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-app.bicep",
        "  EVENTHUB_CONSUMER_GROUP: eventHubConsumerGroup\n",
        "",
    );
    assert_reported(
        &check_app_settings(sandbox.root()),
        &["`EVENTHUB_CONSUMER_GROUP`", "functions/ingest/function.json"],
    );
}

#[test]
fn app_settings_check_catches_a_handler_setting_set_on_only_one_plan() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/function-app.bicep";
    sandbox.replace(rel, "  HUB2LAKE_LAKE_URL: lakeUrl\n", "");
    sandbox.replace(
        rel,
        "  FUNCTIONS_EXTENSION_VERSION: '~4'\n",
        "  FUNCTIONS_EXTENSION_VERSION: '~4'\n  HUB2LAKE_LAKE_URL: lakeUrl\n",
    );
    assert_reported(
        &check_app_settings(sandbox.root()),
        &["`HUB2LAKE_LAKE_URL`", "on every hosting plan"],
    );
}

#[test]
fn app_settings_check_catches_a_connection_string_and_a_colon_name() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-app.bicep",
        "  AZURE_CLIENT_ID: identityClientId\n",
        "  AZURE_CLIENT_ID: identityClientId\n  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountKey=x'\n  'Lake:Url': lakeUrl\n",
    );
    let problems = check_app_settings(sandbox.root());
    assert_reported(&problems, &["`AzureWebJobsStorage`", "key or connection string"]);
    assert_reported(&problems, &["`Lake:Url`", "`__`"]);
}

#[test]
fn app_settings_check_catches_a_flex_runtime_that_is_not_custom() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-site-flex.bicep",
        "name: 'custom'",
        "name: 'node'",
    );
    assert_reported(&check_app_settings(sandbox.root()), &["runtime.name = 'custom'"]);
}

#[test]
fn app_settings_check_fails_when_the_function_files_are_missing() {
    let sandbox = Sandbox::new();
    std::fs::remove_dir_all(sandbox.path("functions")).unwrap();
    std::fs::remove_file(sandbox.path("host.json")).unwrap();
    let problems = check_app_settings(sandbox.root());
    assert_reported(&problems, &["functions", "no functions/*/function.json"]);
    assert_reported(&problems, &["host.json", "missing"]);
}

#[test]
fn app_settings_check_follows_new_percent_references() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "functions/seal/function.json",
        r#"{ "bindings": [{ "type": "timerTrigger", "direction": "in", "name": "timer",
             "schedule": "%HUB2LAKE_SEAL_SCHEDULE%", "runOnStartup": "%SEAL_ON_STARTUP%" }] }"#,
    );
    assert_reported(
        &check_app_settings(sandbox.root()),
        &["`SEAL_ON_STARTUP`", "functions/seal/function.json"],
    );
}

#[test]
fn hub2lake_check_catches_a_misspelt_setting_name() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-app.bicep",
        "HUB2LAKE_LOG_FORMAT: 'json'",
        "HUB2LAKE_LOG_FROMAT: 'json'",
    );
    assert_reported(
        &check_hub2lake_settings_known(sandbox.root()),
        &["`HUB2LAKE_LOG_FROMAT`", "config.rs"],
    );
}

#[test]
fn hub2lake_check_catches_a_misspelt_log_stream_setting() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-app.bicep",
        "HUB2LAKE_LOG_EVENTHUB_NAME: logEventHubName",
        "HUB2LAKE_LOG_EVENTHUB_NAEM: logEventHubName",
    );
    assert_reported(
        &check_hub2lake_settings_known(sandbox.root()),
        &["`HUB2LAKE_LOG_EVENTHUB_NAEM`", "telemetry/settings.rs"],
    );
}

#[test]
fn hub2lake_check_knows_log_stream_settings_only_from_their_source_file() {
    // The log stream's names are not in config.rs: without its settings file the
    // check must report them, so it really reads that file.
    let sandbox = Sandbox::new();
    sandbox.write("handler/src/telemetry/settings.rs", "// no settings here\n");
    assert_reported(
        &check_hub2lake_settings_known(sandbox.root()),
        &["`HUB2LAKE_LOG_EVENTHUB_NAMESPACE`"],
    );
}

#[test]
fn parameters_check_catches_unknown_and_missing_parameters() {
    let sandbox = Sandbox::new();
    let rel = "infra/main.parameters.json";
    let mut json: serde_json::Value = serde_json::from_str(&sandbox.read(rel)).unwrap();
    let parameters = json["parameters"].as_object_mut().unwrap();
    parameters.remove("environmentName");
    parameters.insert("planSkuu".into(), serde_json::json!({ "value": "FC1" }));
    sandbox.write(rel, &serde_json::to_string_pretty(&json).unwrap());
    let problems = check_parameters_file(sandbox.root());
    assert_reported(&problems, &["`planSkuu`", "not declared"]);
    assert_reported(&problems, &["required parameter `environmentName`"]);
}

#[test]
fn wiring_check_catches_a_renamed_output_and_an_unknown_module_parameter() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/identity.bicep",
        "output clientId string",
        "output clientID string",
    );
    sandbox.replace(
        "infra/main.bicep",
        "    retentionInDays: logRetentionInDays\n",
        "    retentionDays: logRetentionInDays\n",
    );
    let problems = check_module_wiring(sandbox.root());
    assert_reported(&problems, &["infra/main.bicep", "`identity` has no output `clientId`"]);
    assert_reported(&problems, &["infra/main.bicep", "passes `retentionDays`"]);
}

#[test]
fn azd_check_catches_a_renamed_service_and_an_unknown_abbreviation() {
    let sandbox = Sandbox::new();
    assert_clean("azd check on an intact copy", &check_azd_project(sandbox.root()));
    sandbox.replace("azure.yaml", "  hub2lake:\n", "  api:\n");
    sandbox.replace("infra/main.bicep", "abbrs.webServerFarms", "abbrs.webServerFarm");
    let problems = check_azd_project(sandbox.root());
    assert_reported(&problems, &["azure.yaml", "service `api`", "azd-service-name"]);
    assert_reported(&problems, &["infra/main.bicep", "`abbrs.webServerFarm` is not a key"]);
}
