//! infra/main.parameters.json and infra/main.bicep agree.

mod common;

use common::assert_clean;
use hub2lake_infra_check::{check_parameters_file, repo_root};

#[test]
fn parameters_file_names_only_declared_parameters_and_every_required_one() {
    assert_clean("parameters file check", &check_parameters_file(&repo_root()));
}

#[test]
fn azure_yaml_service_matches_the_function_app_tag_and_abbreviations_exist() {
    assert_clean(
        "azd project check",
        &hub2lake_infra_check::check_azd_project(&repo_root()),
    );
}
