//! Checks that keep a first deployment from failing before the app ever runs:
//!
//! * [`check_flex_site`]: a Flex Consumption site (a `Microsoft.Web/sites` with
//!   `properties.functionAppConfig`) sets none of the site properties or app settings
//!   in Learn's "Flex Consumption plan deprecations" table
//!   (<https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations>).
//!   `ftpsState` in particular: newer regional stamps fail the deployment with
//!   "FtpsState ... for Flex Consumption sites is invalid. Please remove"
//!   (Azure/terraform-azurerm-avm-res-web-site#360).
//! * [`check_parameter_limits`]: every bounded parameter of `infra/main.bicep`
//!   accepts only values ARM accepts (Event Hubs quotas, Flex scale limits, ...), so
//!   a typo fails at parameter validation, not halfway through a deployment.
//! * [`check_azd_alpha`]: with `language: custom` in `azure.yaml` (an azd alpha
//!   feature: azure-dev `cli/azd/cmd/container.go` refuses the project with
//!   "service is using language 'custom' (alpha) but it is not enabled"), every
//!   workflow that runs azd enables it through `AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM`
//!   (read with Go's `strconv.ParseBool`, azure-dev `pkg/alpha/alpha_feature_manager.go`)
//!   or `azd config set alpha.language.custom on`, and `docs/deploy.md` says so
//!   before its first `azd up` / `azd provision`.

use std::path::Path;

use tree_sitter::Node;

use crate::{lookup, object_entries, string_literal, whole_file, BicepFile, Infra, Problem};

const FLEX_DEPRECATIONS: &str = "Learn, functions-app-settings, \"Flex Consumption plan deprecations\"";

/// Site properties (under `properties` or `properties.siteConfig`) that Flex
/// Consumption does not accept, with Learn's reason. Compared case-insensitively.
pub const FLEX_INVALID_SITE_PROPERTIES: &[(&str, &str)] = &[
    ("ftpsState", "FTPS not supported"),
    ("use32BitWorkerProcess", "32-bit not supported"),
    ("isReserved", "not valid"),
    ("isXenon", "not valid"),
    ("windowsFxVersion", "not valid"),
    ("alwaysOn", "not valid"),
    (
        "preWarmedInstanceCount",
        "replaced by functionAppConfig.scaleAndConcurrency.alwaysReady",
    ),
    (
        "functionAppScaleLimit",
        "replaced by functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
    ),
    (
        "containerSize",
        "replaced by functionAppConfig.scaleAndConcurrency.instanceMemoryMB",
    ),
    ("javaVersion", "replaced by functionAppConfig.runtime.version"),
    ("powerShellVersion", "replaced by functionAppConfig.runtime.version"),
    ("netFrameworkVersion", "replaced by functionAppConfig.runtime.version"),
    ("linuxFxVersion", "replaced by functionAppConfig.runtime"),
];

/// App settings Flex Consumption does not accept, with Learn's reason.
pub const FLEX_INVALID_APP_SETTINGS: &[(&str, &str)] = &[
    ("FUNCTIONS_EXTENSION_VERSION", "set by the platform"),
    ("FUNCTIONS_WORKER_RUNTIME", "replaced by functionAppConfig.runtime.name"),
    (
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "replaced by functionAppConfig.runtime.version",
    ),
    (
        "WEBSITE_NODE_DEFAULT_VERSION",
        "replaced by functionAppConfig.runtime.version",
    ),
    (
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "replaced by scaleAndConcurrency.triggers",
    ),
    ("FUNCTIONS_WORKER_PROCESS_COUNT", "not valid"),
    ("FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED", "not valid"),
    (
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "replaced by functionAppConfig.deployment",
    ),
    ("WEBSITE_CONTENTSHARE", "replaced by functionAppConfig.deployment"),
    (
        "WEBSITE_RUN_FROM_PACKAGE",
        "Flex deploys from functionAppConfig.deployment",
    ),
];

/// A Flex site sets nothing from the deprecations table, and its app settings
/// (the Flex branch of the `appsettings` config) neither.
pub fn check_flex_site(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    let mut flex_sites = 0;
    for (file, site) in infra.resources() {
        if site.existing || site.type_name != "Microsoft.Web/sites" {
            continue;
        }
        if lookup(file, site.body, &["properties", "functionAppConfig"]).is_none() {
            continue;
        }
        flex_sites += 1;
        let Some(properties) = lookup(file, site.body, &["properties"]) else {
            continue;
        };
        let site_config = lookup(file, properties, &["siteConfig"]);
        for object in std::iter::once(properties).chain(site_config) {
            for (key, key_node, _) in object_entries(file, object) {
                if let Some((name, reason)) = FLEX_INVALID_SITE_PROPERTIES
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&key))
                {
                    problems.push(file.problem(
                        key_node,
                        format!(
                            "`{name}` on a Flex Consumption site ({}): {reason} ({FLEX_DEPRECATIONS}); remove it",
                            site.symbol
                        ),
                    ));
                }
            }
        }
    }
    if flex_sites == 0 {
        problems.push(whole_file(
            "infra",
            "no Flex Consumption site found (Microsoft.Web/sites with properties.functionAppConfig)",
        ));
    }
    for (file, settings) in flex_app_settings(&infra) {
        for (key, key_node) in settings {
            if let Some((name, reason)) = FLEX_INVALID_APP_SETTINGS.iter().find(|(name, _)| *name == key) {
                problems.push(file.problem(
                    key_node,
                    format!("app setting `{name}` on the Flex Consumption plan: {reason} ({FLEX_DEPRECATIONS})"),
                ));
            }
        }
    }
    problems
}

/// The app settings the Flex plan gets: the `appsettings` config resources'
/// properties, taking the `isFlex` side of plan ternaries.
fn flex_app_settings(infra: &Infra) -> Vec<(&BicepFile, Vec<(String, Node<'_>)>)> {
    let mut out = Vec::new();
    for file in &infra.files {
        let vars = file.variables();
        for r in file.resources() {
            let is_appsettings = r.type_name == "Microsoft.Web/sites/config"
                && lookup(file, r.body, &["name"])
                    .and_then(|n| string_literal(file, n))
                    .as_deref()
                    == Some("appsettings");
            if !is_appsettings || r.existing {
                continue;
            }
            if let Some(properties) = lookup(file, r.body, &["properties"]) {
                let mut settings = Vec::new();
                flex_side(file, properties, &vars, 0, &mut settings);
                out.push((file, settings));
            }
        }
    }
    out
}

fn flex_side<'a>(
    file: &'a BicepFile,
    node: Node<'a>,
    vars: &std::collections::HashMap<String, Node<'a>>,
    depth: usize,
    out: &mut Vec<(String, Node<'a>)>,
) {
    if depth > 16 {
        return;
    }
    match node.kind() {
        "object" => {
            for (key, key_node, _) in object_entries(file, node) {
                out.push((key, key_node));
            }
        }
        "call_expression" => {
            if let Some(arguments) = node.child_by_field_name("arguments") {
                let mut cursor = arguments.walk();
                for arg in arguments.named_children(&mut cursor) {
                    flex_side(file, arg, vars, depth + 1, out);
                }
            }
        }
        "ternary_expression" => {
            let condition = node
                .child_by_field_name("condition")
                .map(|c| file.text(c).replace(' ', ""));
            let side = match condition.as_deref() {
                Some("isFlex") | Some("planSku=='FC1'") => node.child_by_field_name("consequence"),
                Some("!isFlex") | Some("planSku!='FC1'") => node.child_by_field_name("alternative"),
                // Not a plan choice: either side may reach the Flex app.
                _ => {
                    for field in ["consequence", "alternative"] {
                        if let Some(side) = node.child_by_field_name(field) {
                            flex_side(file, side, vars, depth + 1, out);
                        }
                    }
                    None
                }
            };
            if let Some(side) = side {
                flex_side(file, side, vars, depth + 1, out);
            }
        }
        "identifier" => {
            if let Some(value) = vars.get(file.text(node)) {
                flex_side(file, *value, vars, depth + 1, out);
            }
        }
        "parenthesized_expression" => {
            let mut cursor = node.walk();
            let inner = node.named_children(&mut cursor).next();
            if let Some(inner) = inner {
                flex_side(file, inner, vars, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Values ARM accepts for a parameter.
#[derive(Debug, Clone, Copy)]
pub enum ArmDomain {
    /// Every integer from the first to the second, inclusive.
    Range(i64, i64),
    OneOf(&'static [i64]),
}

impl ArmDomain {
    fn contains(self, value: i64) -> bool {
        match self {
            ArmDomain::Range(lo, hi) => (lo..=hi).contains(&value),
            ArmDomain::OneOf(values) => values.contains(&value),
        }
    }
}

impl std::fmt::Display for ArmDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArmDomain::Range(lo, hi) => write!(f, "{lo}-{hi}"),
            ArmDomain::OneOf(values) => {
                let list: Vec<String> = values.iter().map(i64::to_string).collect();
                write!(f, "one of {}", list.join(", "))
            }
        }
    }
}

/// A parameter of infra/main.bicep and what ARM accepts for the property it feeds.
pub struct ArmLimit {
    pub param: &'static str,
    pub domain: ArmDomain,
    pub source: &'static str,
}

/// The bounded parameters of infra/main.bicep.
pub const ARM_LIMITS: &[ArmLimit] = &[
    ArmLimit {
        param: "eventHubCapacity",
        domain: ArmDomain::Range(1, 40),
        source: "Event Hubs quotas: a Standard namespace has 1-40 throughput units",
    },
    ArmLimit {
        param: "eventHubPremiumProcessingUnits",
        domain: ArmDomain::OneOf(&[1, 2, 4, 8, 16]),
        source: "Event Hubs Premium: 1, 2, 4, 8 or 16 processing units",
    },
    ArmLimit {
        param: "eventHubMessageRetentionInDays",
        domain: ArmDomain::Range(1, 7),
        source: "Event Hubs FAQ/quotas: Standard keeps events at most 7 days",
    },
    ArmLimit {
        param: "eventHubPremiumMessageRetentionInDays",
        domain: ArmDomain::Range(1, 90),
        source: "Event Hubs FAQ/quotas: Premium keeps events at most 90 days",
    },
    ArmLimit {
        param: "eventHubPartitionCount",
        domain: ArmDomain::Range(1, 32),
        source: "Event Hubs quotas: at most 32 partitions per hub on Standard",
    },
    ArmLimit {
        param: "flexMaximumInstanceCount",
        domain: ArmDomain::Range(40, 1000),
        source: "Flex Consumption: maximumInstanceCount is 40-1000",
    },
    ArmLimit {
        param: "flexInstanceMemoryMB",
        domain: ArmDomain::OneOf(&[512, 2048, 4096]),
        source: "Flex Consumption: instance memory 512, 2048 or 4096 MB",
    },
    ArmLimit {
        param: "premiumMaximumElasticWorkerCount",
        domain: ArmDomain::Range(1, 100),
        source: "Elastic Premium: at most 100 instances per plan",
    },
    ArmLimit {
        param: "logRetentionInDays",
        domain: ArmDomain::Range(30, 730),
        source: "Log Analytics (PerGB2018): retention 30-730 days",
    },
];

/// The integers a parameter's decorators let through: `@allowed([...])`, or
/// `@minValue`..`@maxValue` (`None` for a missing bound).
struct Declared {
    allowed: Option<Vec<i64>>,
    min: Option<i64>,
    max: Option<i64>,
    default: Option<i64>,
}

fn declared<'a>(file: &'a BicepFile, name: &str) -> Option<(Node<'a>, Declared)> {
    let statements = file.top_level();
    for (i, node) in statements.iter().enumerate() {
        if node.kind() != "parameter_declaration" {
            continue;
        }
        let mut cursor = node.walk();
        let mut named = node.named_children(&mut cursor);
        if named.next().map(|n| file.text(n)) != Some(name) {
            continue;
        }
        let default = named
            .last()
            .filter(|n| n.kind() == "number")
            .and_then(|n| file.text(n).parse().ok());
        let mut out = Declared {
            allowed: None,
            min: None,
            max: None,
            default,
        };
        let decorators = i
            .checked_sub(1)
            .map(|j| statements[j])
            .filter(|d| d.kind() == "decorators");
        for call in decorators.map(|d| file_nodes(d, "call_expression")).unwrap_or_default() {
            let function = call.child_by_field_name("function").map(|f| file.text(f));
            let numbers: Vec<i64> = call
                .child_by_field_name("arguments")
                .map(|a| file_nodes(a, "number"))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| file.text(n).parse().ok())
                .collect();
            match function {
                Some("allowed") => out.allowed = Some(numbers),
                Some("minValue") => out.min = numbers.first().copied(),
                Some("maxValue") => out.max = numbers.first().copied(),
                _ => {}
            }
        }
        return Some((*node, out));
    }
    None
}

fn file_nodes<'a>(node: Node<'a>, kind: &str) -> Vec<Node<'a>> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.kind() == kind {
            out.push(n);
        }
        let mut cursor = n.walk();
        stack.extend(n.named_children(&mut cursor));
    }
    out
}

/// Every parameter in [`ARM_LIMITS`] is declared in infra/main.bicep with
/// decorators that let through only values ARM accepts.
pub fn check_parameter_limits(root: &Path) -> Vec<Problem> {
    let rel = "infra/main.bicep";
    let main = match BicepFile::load(&root.join(rel), rel) {
        Ok(file) => file,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    for limit in ARM_LIMITS {
        let Some((node, declared)) = declared(&main, limit.param) else {
            problems.push(whole_file(
                rel,
                format!(
                    "parameter `{}` is gone: update ARM_LIMITS in tests/infra-check",
                    limit.param
                ),
            ));
            continue;
        };
        let mut bad = |what: String| {
            problems.push(main.problem(
                node,
                format!(
                    "parameter `{}` {what}, but ARM accepts only {} ({})",
                    limit.param, limit.domain, limit.source
                ),
            ))
        };
        match (&declared.allowed, declared.min, declared.max) {
            (Some(values), _, _) => {
                if let Some(v) = values.iter().find(|v| !limit.domain.contains(**v)) {
                    bad(format!("allows {v}"));
                }
            }
            (None, Some(lo), Some(hi)) => {
                if let Some(v) = (lo..=hi).find(|v| !limit.domain.contains(*v)) {
                    bad(format!("accepts {v} (@minValue({lo}) @maxValue({hi}))"));
                }
            }
            (None, lo, hi) => bad(format!(
                "has no {} bound",
                match (lo, hi) {
                    (None, None) => "@allowed or @minValue/@maxValue",
                    (None, _) => "@minValue",
                    _ => "@maxValue",
                }
            )),
        }
        if let Some(default) = declared.default {
            if !limit.domain.contains(default) {
                bad(format!("defaults to {default}"));
            }
        }
    }
    problems
}

/// The alpha feature azd needs for `language: custom`, as an environment variable
/// and as a config key.
pub const AZD_ALPHA_ENV: &str = "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM";
pub const AZD_ALPHA_CONFIG_COMMAND: &str = "azd config set alpha.language.custom on";

/// azd commands that load azure.yaml (and so refuse a disabled `language: custom`).
const AZD_PROJECT_COMMANDS: &[&str] = &[
    "azd up",
    "azd provision",
    "azd deploy",
    "azd package",
    "azd build",
    "azd restore",
    "azd down",
];

/// Values Go's strconv.ParseBool reads as true.
const PARSE_BOOL_TRUE: &[&str] = &["1", "t", "T", "TRUE", "true", "True"];

/// With `language: custom` in azure.yaml, workflows that run azd enable the alpha
/// feature, and docs/deploy.md enables it before its first `azd up` / `azd provision`.
pub fn check_azd_alpha(root: &Path) -> Vec<Problem> {
    let Ok(azure_yaml) = std::fs::read_to_string(root.join("azure.yaml")) else {
        return vec![whole_file("azure.yaml", "missing")];
    };
    let uses_custom = crate::azure_yaml_services(&azure_yaml)
        .values()
        .any(|service| service.get("language").map(String::as_str) == Some("custom"));
    if !uses_custom {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let workflows = root.join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&workflows)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"));
    files.sort();
    for path in files {
        let rel = format!(
            ".github/workflows/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        match std::fs::read_to_string(&path) {
            Ok(text) => problems.extend(check_workflow_alpha(&rel, &text)),
            Err(e) => problems.push(whole_file(&rel, format!("cannot read: {e}"))),
        }
    }
    problems.extend(check_docs_alpha(root));
    problems
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn runs_azd_project_command(line: &str) -> bool {
    !is_comment(line) && AZD_PROJECT_COMMANDS.iter().any(|c| line.contains(c))
}

/// One workflow: if it runs azd on the project, the alpha feature is enabled in an
/// `env:` block before the first such command, or with `azd config set`.
pub fn check_workflow_alpha(rel: &str, text: &str) -> Vec<Problem> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(first_azd) = lines.iter().position(|l| runs_azd_project_command(l)) else {
        return Vec::new();
    };
    let problem = |line: usize, message: String| Problem {
        file: rel.to_string(),
        line: line + 1,
        col: 1,
        message,
    };
    let config_command = lines[..first_azd]
        .iter()
        .any(|l| !is_comment(l) && l.contains(AZD_ALPHA_CONFIG_COMMAND));
    if config_command {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut enabled = false;
    for (i, line) in lines[..first_azd].iter().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if is_comment(line) || key.trim() != AZD_ALPHA_ENV {
            continue;
        }
        let value = value
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(|c| c == '\'' || c == '"');
        if !PARSE_BOOL_TRUE.contains(&value) {
            problems.push(problem(
                i,
                format!(
                    "{AZD_ALPHA_ENV} is {value:?}, which azd reads as not enabled: it parses the variable \
                     with Go's strconv.ParseBool, so use true (\"on\" is for `{AZD_ALPHA_CONFIG_COMMAND}`)"
                ),
            ));
            continue;
        }
        if !inside_env_block(&lines, i) {
            problems.push(problem(i, format!("{AZD_ALPHA_ENV} must be a key of an `env:` block")));
            continue;
        }
        enabled = true;
    }
    if !enabled && problems.is_empty() {
        problems.push(problem(
            first_azd,
            format!(
                "runs azd on a project with `language: custom`, an azd alpha feature, without enabling it: \
                 azd refuses with \"service is using language 'custom' (alpha) but it is not enabled\". \
                 Set {AZD_ALPHA_ENV}: 'true' in the workflow's (or job's) env"
            ),
        ));
    }
    problems
}

/// True when the nearest less-indented line above `index` is `env:`.
fn inside_env_block(lines: &[&str], index: usize) -> bool {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let own = indent(lines[index]);
    lines[..index]
        .iter()
        .rev()
        .filter(|l| !l.trim().is_empty() && !is_comment(l))
        .find(|l| indent(l) < own)
        .is_some_and(|l| l.trim() == "env:")
}

/// docs/deploy.md enables the alpha feature before it first runs `azd up` / `azd provision`.
fn check_docs_alpha(root: &Path) -> Vec<Problem> {
    let rel = "docs/deploy.md";
    let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
        return vec![whole_file(rel, "missing")];
    };
    let first = |needle: &str| text.lines().position(|l| l.trim_start().starts_with(needle));
    let first_azd = [first("azd up"), first("azd provision")].into_iter().flatten().min();
    match (first(AZD_ALPHA_CONFIG_COMMAND), first_azd) {
        (Some(config), Some(azd)) if config < azd => Vec::new(),
        (_, None) => vec![whole_file(rel, "has no `azd up` / `azd provision` step")],
        (_, Some(azd)) => vec![Problem {
            file: rel.to_string(),
            line: azd + 1,
            col: 1,
            message: format!("runs azd before enabling `language: custom`: put `{AZD_ALPHA_CONFIG_COMMAND}` first"),
        }],
    }
}

/// All three.
pub fn check_first_deploy(root: &Path) -> Vec<Problem> {
    let mut problems = check_flex_site(root);
    problems.extend(check_parameter_limits(root));
    problems.extend(check_azd_alpha(root));
    problems
}
