//! Checks of the Bicep infrastructure and the Functions app files, without the
//! Bicep CLI or Azure.
//!
//! The Bicep files under `infra/` are parsed with tree-sitter-bicep; properties are
//! read from the syntax tree (resource bodies, object properties, variables), not
//! from regular expressions over the text. Every check takes the repository root
//! and returns the problems it found (empty = pass), so the tests can run each check
//! on the real tree and on deliberately broken copies.
//!
//! What is checked:
//! * [`check_syntax`]: every `.bicep` file parses without ERROR or MISSING nodes.
//! * [`check_module_wiring`]: module paths exist, module params exist and required
//!   ones are passed, `<module>.outputs.<name>` names a real output.
//! * [`check_security`]: storage is keyless (no shared key), TLS 1.2, HTTPS only, no
//!   public blobs, the lake has a hierarchical namespace, Event Hubs and Application
//!   Insights have local auth disabled, function apps run as a user-assigned identity.
//! * [`check_role_assignments`]: the roles the app needs are assigned with
//!   deterministic `guid()` names on the right kind of resource; no broad roles.
//! * [`check_app_settings`]: the app settings cover what the Functions host reads
//!   (identity-based connections, `%NAME%` references in `host.json` and
//!   `functions/*/function.json`) and what the handler requires.
//! * [`check_hub2lake_settings_known`]: every `HUB2LAKE_*` app setting is one the
//!   handler knows (`handler/src/config.rs`): a typo guard.
//! * [`check_parameters_file`]: `infra/main.parameters.json` matches the parameters
//!   of `infra/main.bicep`.
//! * [`check_azd_project`]: `azure.yaml`'s function service matches the
//!   `azd-service-name` tag; `abbrs.*` names exist in `infra/abbreviations.json`.
//! * [`first_deploy`]: the Flex site sets nothing Flex rejects (`ftpsState`, ...),
//!   bounded parameters accept only what ARM accepts, and azd's `language: custom`
//!   alpha feature is enabled wherever azd runs (workflows, docs/deploy.md).
//!
//! `cargo run -p hub2lake-infra-check --example check [root]` prints every problem;
//! `--example dump -- <file.bicep>` prints a file's syntax tree (handy when a new
//! Bicep construct does not parse with tree-sitter-bicep).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use tree_sitter::{Node, Parser, Tree};

pub mod first_deploy;
pub use first_deploy::{check_azd_alpha, check_first_deploy, check_flex_site, check_parameter_limits};

/// One finding: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path relative to the repository root (forward slashes).
    pub file: String,
    /// 1-based line; 0 when the problem is about the file as a whole.
    pub line: usize,
    /// 1-based column; 0 when the problem is about the file as a whole.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        }
    }
}

/// Renders problems one per line (for assertion messages).
pub fn report(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// The repository root (this crate lives in `tests/infra-check`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root exists")
}

/// Built-in role definitions the checks know by GUID.
pub mod roles {
    pub const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
    pub const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
    pub const STORAGE_BLOB_DATA_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
    pub const STORAGE_TABLE_DATA_CONTRIBUTOR: &str = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
    pub const EVENT_HUBS_DATA_RECEIVER: &str = "a638d3c7-ab3a-418d-83e6-5f17a39d4fde";
    pub const EVENT_HUBS_DATA_SENDER: &str = "2b629674-e913-4c01-ae53-ef4638d8f975";
    pub const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
}

/// A role the function app's identity must hold: GUID, display name, and the
/// resource type the assignment must be scoped to.
pub struct RequiredRole {
    pub guid: &'static str,
    pub name: &'static str,
    pub scope_type: &'static str,
}

/// The least-privilege set the app needs.
pub const REQUIRED_ROLES: &[RequiredRole] = &[
    RequiredRole {
        guid: roles::STORAGE_BLOB_DATA_OWNER,
        name: "Storage Blob Data Owner (host storage)",
        scope_type: "Microsoft.Storage/storageAccounts",
    },
    RequiredRole {
        guid: roles::STORAGE_TABLE_DATA_CONTRIBUTOR,
        name: "Storage Table Data Contributor (host storage diagnostic events)",
        scope_type: "Microsoft.Storage/storageAccounts",
    },
    RequiredRole {
        guid: roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
        name: "Storage Blob Data Contributor (lake container)",
        scope_type: "Microsoft.Storage/storageAccounts/blobServices/containers",
    },
    RequiredRole {
        guid: roles::EVENT_HUBS_DATA_RECEIVER,
        name: "Azure Event Hubs Data Receiver (hub)",
        scope_type: "Microsoft.EventHub/namespaces/eventhubs",
    },
    RequiredRole {
        guid: roles::MONITORING_METRICS_PUBLISHER,
        name: "Monitoring Metrics Publisher (Application Insights)",
        scope_type: "Microsoft.Insights/components",
    },
];

/// Roles that must never be assigned by this template.
pub const FORBIDDEN_ROLES: &[(&str, &str)] = &[
    (roles::OWNER, "Owner"),
    (roles::CONTRIBUTOR, "Contributor"),
    (roles::USER_ACCESS_ADMINISTRATOR, "User Access Administrator"),
];

// ---------------------------------------------------------------------------
// Parsed Bicep files
// ---------------------------------------------------------------------------

/// One parsed `.bicep` file.
pub struct BicepFile {
    /// Path relative to the repository root, forward slashes.
    pub rel: String,
    /// Absolute path.
    pub path: PathBuf,
    pub source: String,
    tree: Tree,
}

/// A `resource` declaration.
pub struct Resource<'a> {
    pub symbol: String,
    /// e.g. `Microsoft.Storage/storageAccounts`
    pub type_name: String,
    pub api_version: String,
    pub existing: bool,
    /// Declared with `= if (...)` or inside a `for`.
    pub conditional: bool,
    /// The resource body object.
    pub body: Node<'a>,
    pub node: Node<'a>,
}

/// A `param` declaration.
pub struct Param {
    pub name: String,
    pub has_default: bool,
}

/// A `module` declaration.
pub struct Module<'a> {
    pub symbol: String,
    /// The module path as written (relative to the declaring file).
    pub path: String,
    pub body: Node<'a>,
    pub node: Node<'a>,
}

fn new_parser() -> Parser {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("tree-sitter-bicep grammar ABI is compatible with the tree-sitter runtime");
    parser
}

impl BicepFile {
    /// Reads and parses `path` (absolute); `rel` is how problems name it.
    pub fn load(path: &Path, rel: &str) -> Result<Self, Problem> {
        let source = std::fs::read_to_string(path).map_err(|e| Problem {
            file: rel.to_string(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Self::from_source(path, rel, source))
    }

    /// Parses `source` as if read from `path`.
    pub fn from_source(path: &Path, rel: &str, source: String) -> Self {
        let tree = new_parser()
            .parse(&source, None)
            .expect("parser has a language and no timeout");
        Self {
            rel: rel.to_string(),
            path: path.to_path_buf(),
            source,
            tree,
        }
    }

    pub fn root(&self) -> Node<'_> {
        self.tree.root_node()
    }

    /// Source text of a node.
    pub fn text(&self, node: Node<'_>) -> &str {
        &self.source[node.byte_range()]
    }

    /// A problem located at `node`.
    pub fn problem(&self, node: Node<'_>, message: impl Into<String>) -> Problem {
        let pos = node.start_position();
        Problem {
            file: self.rel.clone(),
            line: pos.row + 1,
            col: pos.column + 1,
            message: message.into(),
        }
    }

    /// The first ERROR or MISSING node in document order, if any.
    pub fn first_syntax_error(&self) -> Option<Problem> {
        fn find<'t>(node: Node<'t>) -> Option<Node<'t>> {
            if node.is_error() || node.is_missing() {
                return Some(node);
            }
            if !node.has_error() {
                return None;
            }
            let mut cursor = node.walk();
            let children: Vec<Node<'t>> = node.children(&mut cursor).collect();
            children.into_iter().find_map(find)
        }
        let node = find(self.root())?;
        let message = if node.is_missing() {
            format!("syntax error: missing `{}`", node.kind())
        } else {
            let snippet: String = self.text(node).chars().take(40).collect();
            format!(
                "syntax error: unexpected `{}`",
                snippet.lines().next().unwrap_or("").trim()
            )
        };
        Some(self.problem(node, message))
    }

    /// The top-level statements of the file.
    pub fn top_level(&self) -> Vec<Node<'_>> {
        let root = self.root();
        let mut cursor = root.walk();
        root.named_children(&mut cursor).collect()
    }

    /// All `resource` declarations, including nested ones.
    pub fn resources(&self) -> Vec<Resource<'_>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root()];
        while let Some(node) = stack.pop() {
            if node.kind() == "resource_declaration" {
                if let Some(resource) = self.resource_from(node) {
                    out.push(resource);
                }
            }
            let mut cursor = node.walk();
            for child in node.named_children(&mut cursor) {
                stack.push(child);
            }
        }
        out.sort_by_key(|r| r.node.start_byte());
        out
    }

    fn resource_from<'a>(&'a self, node: Node<'a>) -> Option<Resource<'a>> {
        let mut cursor = node.walk();
        let named: Vec<Node<'a>> = node.named_children(&mut cursor).collect();
        let symbol = named.iter().find(|n| n.kind() == "identifier")?;
        let type_node = named.iter().find(|n| n.kind() == "string")?;
        let full_type = string_literal(self, *type_node)?;
        let (type_name, api_version) = full_type
            .split_once('@')
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .unwrap_or((full_type.clone(), String::new()));
        let mut anon = node.walk();
        let existing = node.children(&mut anon).any(|c| c.kind() == "existing");
        let value = *named.last()?;
        let (body, conditional) = body_of(value)?;
        Some(Resource {
            symbol: self.text(*symbol).to_string(),
            type_name,
            api_version,
            existing,
            conditional,
            body,
            node,
        })
    }

    /// Top-level `var` declarations: name -> value expression.
    pub fn variables(&self) -> HashMap<String, Node<'_>> {
        let mut out = HashMap::new();
        for node in self.top_level() {
            if node.kind() != "variable_declaration" {
                continue;
            }
            let mut cursor = node.walk();
            let named: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
            if let (Some(name), Some(value)) = (named.first(), named.get(1)) {
                out.insert(self.text(*name).to_string(), *value);
            }
        }
        out
    }

    /// Top-level `param` declarations.
    pub fn params(&self) -> Vec<Param> {
        let mut out = Vec::new();
        for node in self.top_level() {
            if node.kind() != "parameter_declaration" {
                continue;
            }
            let mut cursor = node.walk();
            let Some(name) = node.named_children(&mut cursor).next() else {
                continue;
            };
            let mut anon = node.walk();
            let has_default = node.children(&mut anon).any(|c| c.kind() == "=");
            out.push(Param {
                name: self.text(name).to_string(),
                has_default,
            });
        }
        out
    }

    /// Names of the top-level `output` declarations.
    pub fn outputs(&self) -> BTreeSet<String> {
        self.top_level()
            .into_iter()
            .filter(|n| n.kind() == "output_declaration")
            .filter_map(|n| {
                let mut cursor = n.walk();
                let name = n.named_children(&mut cursor).next()?;
                Some(self.text(name).to_string())
            })
            .collect()
    }

    /// Top-level `module` declarations.
    pub fn modules(&self) -> Vec<Module<'_>> {
        let mut out = Vec::new();
        for node in self.top_level() {
            if node.kind() != "module_declaration" {
                continue;
            }
            let mut cursor = node.walk();
            let named: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
            let (Some(symbol), Some(path)) = (
                named.iter().find(|n| n.kind() == "identifier"),
                named.iter().find(|n| n.kind() == "string"),
            ) else {
                continue;
            };
            let Some(path) = string_literal(self, *path) else {
                continue;
            };
            let Some((body, _)) = named.last().and_then(|v| body_of(*v)) else {
                continue;
            };
            out.push(Module {
                symbol: self.text(*symbol).to_string(),
                path,
                body,
                node,
            });
        }
        out
    }

    /// Every node of `kind` in the file.
    pub fn nodes_of_kind(&self, kind: &str) -> Vec<Node<'_>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root()];
        while let Some(node) = stack.pop() {
            if node.kind() == kind {
                out.push(node);
            }
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                stack.push(child);
            }
        }
        out.sort_by_key(|n| n.start_byte());
        out
    }
}

/// The object of a resource/module value: `{...}`, `if (c) {...}` or `[for ...: {...}]`.
fn body_of(value: Node<'_>) -> Option<(Node<'_>, bool)> {
    match value.kind() {
        "object" => Some((value, false)),
        "if_statement" => {
            let mut cursor = value.walk();
            let object = value
                .named_children(&mut cursor)
                .filter(|n| n.kind() == "object")
                .last()?;
            Some((object, true))
        }
        "for_statement" => {
            let body = value.child_by_field_name("body")?;
            body_of(body).map(|(object, _)| (object, true))
        }
        _ => None,
    }
}

/// The value of a string literal without interpolation.
pub fn string_literal(file: &BicepFile, node: Node<'_>) -> Option<String> {
    if node.kind() != "string" {
        return None;
    }
    let mut cursor = node.walk();
    let mut out = String::new();
    for child in node.named_children(&mut cursor) {
        match child.kind() {
            "string_content" => out.push_str(file.text(child)),
            "escape_sequence" => out.push_str(&file.text(child)[1..]),
            _ => return None, // interpolation
        }
    }
    Some(out)
}

/// The key of an `object_property`, if it is a plain name or plain string.
fn property_key(file: &BicepFile, property: Node<'_>) -> Option<String> {
    let mut cursor = property.walk();
    let key = property.named_children(&mut cursor).next()?;
    match key.kind() {
        "identifier" => Some(file.text(key).to_string()),
        "string" => string_literal(file, key),
        "compatible_identifier" => Some(file.text(key).trim_end_matches('?').to_string()),
        _ => None,
    }
}

/// The properties of an object node: (key, key node, value node).
pub fn object_entries<'a>(file: &BicepFile, object: Node<'a>) -> Vec<(String, Node<'a>, Node<'a>)> {
    let mut out = Vec::new();
    if object.kind() != "object" {
        return out;
    }
    let mut cursor = object.walk();
    for property in object.named_children(&mut cursor) {
        if property.kind() != "object_property" {
            continue;
        }
        let Some(key) = property_key(file, property) else {
            continue;
        };
        let mut inner = property.walk();
        let named: Vec<Node<'a>> = property.named_children(&mut inner).collect();
        if named.len() < 2 {
            continue;
        }
        out.push((key, named[0], named[named.len() - 1]));
    }
    out
}

/// Looks up `path` (e.g. `["properties", "isHnsEnabled"]`) in an object node.
pub fn lookup<'a>(file: &BicepFile, object: Node<'a>, path: &[&str]) -> Option<Node<'a>> {
    let (first, rest) = path.split_first()?;
    let value = object_entries(file, object)
        .into_iter()
        .find(|(k, _, _)| k == first)
        .map(|(_, _, v)| v)?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(file, value, rest)
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Bool(bool),
    Str(String),
    Int(i64),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Str(s) => write!(f, "'{s}'"),
            Literal::Int(i) => write!(f, "{i}"),
        }
    }
}

/// The literal a node is, if it is one.
pub fn literal(file: &BicepFile, node: Node<'_>) -> Option<Literal> {
    match node.kind() {
        "boolean" => Some(Literal::Bool(file.text(node) == "true")),
        "number" => file.text(node).parse().ok().map(Literal::Int),
        "string" => string_literal(file, node).map(Literal::Str),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The infrastructure tree
// ---------------------------------------------------------------------------

/// All `.bicep` files under `<root>/infra`, parsed, in path order.
pub struct Infra {
    pub root: PathBuf,
    pub files: Vec<BicepFile>,
}

impl Infra {
    /// Loads every `.bicep` file under `<root>/infra`.
    pub fn load(root: &Path) -> Result<Self, Vec<Problem>> {
        let infra = root.join("infra");
        let mut paths = Vec::new();
        collect_files(&infra, "bicep", &mut paths).map_err(|e| {
            vec![Problem {
                file: "infra".into(),
                line: 0,
                col: 0,
                message: format!("cannot list .bicep files: {e}"),
            }]
        })?;
        if paths.is_empty() {
            return Err(vec![Problem {
                file: "infra".into(),
                line: 0,
                col: 0,
                message: "no .bicep files found".into(),
            }]);
        }
        paths.sort();
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for path in paths {
            let rel = relative(root, &path);
            match BicepFile::load(&path, &rel) {
                Ok(file) => files.push(file),
                Err(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            Ok(Self {
                root: root.to_path_buf(),
                files,
            })
        } else {
            Err(problems)
        }
    }

    /// The file at `infra/<rel>`.
    pub fn file(&self, rel: &str) -> Option<&BicepFile> {
        self.files.iter().find(|f| f.rel == format!("infra/{rel}"))
    }

    /// Every resource of every file, with its file.
    pub fn resources(&self) -> Vec<(&BicepFile, Resource<'_>)> {
        self.files
            .iter()
            .flat_map(|f| f.resources().into_iter().map(move |r| (f, r)))
            .collect()
    }

    fn by_path(&self, path: &Path) -> Option<&BicepFile> {
        let wanted = path.canonicalize().ok()?;
        self.files
            .iter()
            .find(|f| f.path.canonicalize().ok().as_deref() == Some(wanted.as_path()))
    }
}

fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, ext, out)?;
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn whole_file(rel: &str, message: impl Into<String>) -> Problem {
    Problem {
        file: rel.to_string(),
        line: 0,
        col: 0,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Every `.bicep` file under `infra/` parses with no ERROR or MISSING node; the
/// first one of each file is reported with its line and column.
pub fn check_syntax(root: &Path) -> Vec<Problem> {
    match Infra::load(root) {
        Ok(infra) => infra.files.iter().filter_map(BicepFile::first_syntax_error).collect(),
        Err(problems) => problems,
    }
}

/// Module declarations point at existing files, pass only parameters the module
/// declares, pass every parameter it requires, and read only outputs it has.
pub fn check_module_wiring(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for file in &infra.files {
        let modules = file.modules();
        let mut outputs_by_symbol: HashMap<String, BTreeSet<String>> = HashMap::new();
        for module in &modules {
            let target_path = file.path.parent().unwrap_or(Path::new(".")).join(&module.path);
            let Some(target) = infra.by_path(&target_path) else {
                problems.push(file.problem(
                    module.node,
                    format!(
                        "module `{}`: file '{}' not found under infra/",
                        module.symbol, module.path
                    ),
                ));
                continue;
            };
            let declared: BTreeMap<String, bool> =
                target.params().into_iter().map(|p| (p.name, p.has_default)).collect();
            let passed: Vec<(String, Node<'_>)> = lookup(file, module.body, &["params"])
                .map(|params| {
                    object_entries(file, params)
                        .into_iter()
                        .map(|(k, key, _)| (k, key))
                        .collect()
                })
                .unwrap_or_default();
            for (name, key) in &passed {
                if !declared.contains_key(name) {
                    problems.push(file.problem(
                        *key,
                        format!(
                            "module `{}` passes `{name}`, which {} does not declare",
                            module.symbol, target.rel
                        ),
                    ));
                }
            }
            for (name, has_default) in &declared {
                if !has_default && !passed.iter().any(|(p, _)| p == name) {
                    problems.push(file.problem(
                        module.node,
                        format!(
                            "module `{}` does not pass required parameter `{name}` of {}",
                            module.symbol, target.rel
                        ),
                    ));
                }
            }
            outputs_by_symbol.insert(module.symbol.clone(), target.outputs());
        }
        // <module>.outputs.<name>
        for member in file.nodes_of_kind("member_expression") {
            let (Some(object), Some(property)) = (
                member.child_by_field_name("object"),
                member.child_by_field_name("property"),
            ) else {
                continue;
            };
            if object.kind() != "member_expression" {
                continue;
            }
            let (Some(symbol), Some(outputs_word)) = (
                object.child_by_field_name("object"),
                object.child_by_field_name("property"),
            ) else {
                continue;
            };
            if file.text(outputs_word) != "outputs" {
                continue;
            }
            let symbol = file.text(symbol);
            let name = file.text(property);
            if let Some(outputs) = outputs_by_symbol.get(symbol) {
                if !outputs.contains(name) {
                    problems.push(file.problem(member, format!("module `{symbol}` has no output `{name}`")));
                }
            }
        }
    }
    problems
}

fn expect(problems: &mut Vec<Problem>, file: &BicepFile, r: &Resource<'_>, path: &[&str], wanted: Literal) {
    match lookup(file, r.body, path) {
        None => problems.push(file.problem(
            r.node,
            format!("{} `{}` must set {} = {wanted}", r.type_name, r.symbol, path.join(".")),
        )),
        Some(value) => match literal(file, value) {
            Some(actual) if actual == wanted => {}
            Some(actual) => problems.push(file.problem(
                value,
                format!(
                    "{} `{}`: {} is {actual}, must be {wanted}",
                    r.type_name,
                    r.symbol,
                    path.join(".")
                ),
            )),
            None => problems.push(file.problem(
                value,
                format!(
                    "{} `{}`: {} must be the literal {wanted}, not an expression",
                    r.type_name,
                    r.symbol,
                    path.join(".")
                ),
            )),
        },
    }
}

/// Security properties, read from the parsed resources.
pub fn check_security(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    let created: Vec<(&BicepFile, Resource<'_>)> = infra.resources().into_iter().filter(|(_, r)| !r.existing).collect();

    let mut storage_accounts = 0;
    let mut hns_accounts = 0;
    let mut sites = 0;
    for (file, r) in &created {
        match r.type_name.as_str() {
            "Microsoft.Storage/storageAccounts" => {
                storage_accounts += 1;
                if lookup(file, r.body, &["properties", "isHnsEnabled"]).and_then(|v| literal(file, v))
                    == Some(Literal::Bool(true))
                {
                    hns_accounts += 1;
                }
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "allowSharedKeyAccess"],
                    Literal::Bool(false),
                );
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "minimumTlsVersion"],
                    Literal::Str("TLS1_2".into()),
                );
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "supportsHttpsTrafficOnly"],
                    Literal::Bool(true),
                );
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "allowBlobPublicAccess"],
                    Literal::Bool(false),
                );
            }
            "Microsoft.Storage/storageAccounts/blobServices/containers" => {
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "publicAccess"],
                    Literal::Str("None".into()),
                );
            }
            "Microsoft.EventHub/namespaces" => {
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "disableLocalAuth"],
                    Literal::Bool(true),
                );
            }
            "Microsoft.Insights/components" => {
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "DisableLocalAuth"],
                    Literal::Bool(true),
                );
            }
            "Microsoft.Web/sites" => {
                sites += 1;
                expect(
                    &mut problems,
                    file,
                    r,
                    &["identity", "type"],
                    Literal::Str("UserAssigned".into()),
                );
                if lookup(file, r.body, &["identity", "userAssignedIdentities"]).is_none() {
                    problems.push(file.problem(
                        r.node,
                        format!(
                            "Microsoft.Web/sites `{}` must list identity.userAssignedIdentities",
                            r.symbol
                        ),
                    ));
                }
                expect(
                    &mut problems,
                    file,
                    r,
                    &["properties", "httpsOnly"],
                    Literal::Bool(true),
                );
            }
            _ => {}
        }
    }
    if storage_accounts == 0 {
        problems.push(whole_file("infra", "no storage account is created"));
    }
    if hns_accounts == 0 {
        problems.push(whole_file(
            "infra",
            "no storage account sets properties.isHnsEnabled = true: the lake must be ADLS Gen2",
        ));
    }
    if sites == 0 {
        problems.push(whole_file("infra", "no function app (Microsoft.Web/sites) is created"));
    }
    problems
}

/// What a role assignment declaration says.
struct Assignment<'a> {
    file: &'a BicepFile,
    node: Node<'a>,
    symbol: String,
    role: Option<String>,
    scope_type: Option<String>,
    /// Source text of properties.principalId.
    principal: String,
    conditional: bool,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// Resolves an expression to a string literal through variables of the same file.
fn resolve_string(file: &BicepFile, node: Node<'_>, vars: &HashMap<String, Node<'_>>, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    match node.kind() {
        "string" => string_literal(file, node),
        "identifier" => vars
            .get(file.text(node))
            .and_then(|v| resolve_string(file, *v, vars, depth + 1)),
        "parenthesized_expression" => {
            let mut cursor = node.walk();
            let inner = node.named_children(&mut cursor).next()?;
            resolve_string(file, inner, vars, depth + 1)
        }
        _ => None,
    }
}

/// The role GUID a `roleDefinitionId` expression names.
fn role_guid(file: &BicepFile, node: Node<'_>, vars: &HashMap<String, Node<'_>>, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    if let Some(s) = resolve_string(file, node, vars, depth) {
        let last = s.rsplit('/').next().unwrap_or(&s).to_ascii_lowercase();
        return is_guid(&last).then_some(last);
    }
    match node.kind() {
        "call_expression" => {
            let function = node.child_by_field_name("function")?;
            let name = file.text(function);
            if !matches!(
                name,
                "subscriptionResourceId" | "resourceId" | "tenantResourceId" | "managementGroupResourceId"
            ) {
                return None;
            }
            let arguments = node.child_by_field_name("arguments")?;
            let mut cursor = arguments.walk();
            let last = arguments.named_children(&mut cursor).last()?;
            role_guid(file, last, vars, depth + 1)
        }
        "identifier" => vars
            .get(file.text(node))
            .and_then(|v| role_guid(file, *v, vars, depth + 1)),
        "member_expression" => {
            // roleDefinition.id where roleDefinition is an `existing` roleDefinitions resource.
            let object = node.child_by_field_name("object")?;
            let property = node.child_by_field_name("property")?;
            if file.text(property) != "id" || object.kind() != "identifier" {
                return None;
            }
            let symbol = file.text(object);
            let r = file.resources().into_iter().find(|r| r.symbol == symbol)?;
            if r.type_name != "Microsoft.Authorization/roleDefinitions" {
                return None;
            }
            let name = lookup(file, r.body, &["name"])?;
            role_guid(file, name, vars, depth + 1)
        }
        _ => None,
    }
}

fn assignments(infra: &Infra) -> (Vec<Assignment<'_>>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for file in &infra.files {
        let vars = file.variables();
        let resources = file.resources();
        for r in resources.iter().filter(|r| !r.existing) {
            if r.type_name != "Microsoft.Authorization/roleAssignments" {
                continue;
            }
            // Deterministic name: guid(...) of stable inputs.
            match lookup(file, r.body, &["name"]) {
                Some(name)
                    if name.kind() == "call_expression"
                        && name
                            .child_by_field_name("function")
                            .is_some_and(|f| file.text(f) == "guid") =>
                {
                    let text = file.text(name);
                    if text.contains("newGuid") || text.contains("utcNow") {
                        problems.push(file.problem(
                            name,
                            format!(
                                "role assignment `{}`: guid() name must not use newGuid()/utcNow()",
                                r.symbol
                            ),
                        ));
                    }
                    let argc = name
                        .child_by_field_name("arguments")
                        .map(|a| {
                            let mut c = a.walk();
                            a.named_children(&mut c).count()
                        })
                        .unwrap_or(0);
                    if argc < 2 {
                        problems.push(file.problem(
                            name,
                            format!(
                                "role assignment `{}`: guid() name needs scope, principal and role inputs",
                                r.symbol
                            ),
                        ));
                    }
                }
                Some(name) => problems.push(file.problem(
                    name,
                    format!("role assignment `{}`: name must be a deterministic guid(...)", r.symbol),
                )),
                None => problems.push(file.problem(r.node, format!("role assignment `{}` has no name", r.symbol))),
            }
            let role =
                lookup(file, r.body, &["properties", "roleDefinitionId"]).and_then(|v| role_guid(file, v, &vars, 0));
            if role.is_none() {
                problems.push(file.problem(
                    r.node,
                    format!(
                        "role assignment `{}`: properties.roleDefinitionId does not resolve to a role definition GUID",
                        r.symbol
                    ),
                ));
            }
            let scope_type = lookup(file, r.body, &["scope"]).and_then(|scope| {
                let symbol = file.text(scope);
                resources
                    .iter()
                    .find(|x| x.symbol == symbol)
                    .map(|x| x.type_name.clone())
            });
            let principal = lookup(file, r.body, &["properties", "principalId"])
                .map(|p| file.text(p).to_string())
                .unwrap_or_default();
            out.push(Assignment {
                file,
                node: r.node,
                symbol: r.symbol.clone(),
                role,
                scope_type,
                principal,
                conditional: r.conditional,
            });
        }
    }
    (out, problems)
}

/// The identity holds every role in [`REQUIRED_ROLES`] through an unconditional
/// assignment with a deterministic `guid()` name, scoped to the right kind of
/// resource, whose `principalId` is the app identity (an expression naming
/// `identity...`, e.g. `identityPrincipalId`); no assignment grants Owner,
/// Contributor or User Access Administrator.
pub fn check_role_assignments(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let (found, mut problems) = assignments(&infra);
    for required in REQUIRED_ROLES {
        let matching: Vec<&Assignment<'_>> = found
            .iter()
            .filter(|a| a.role.as_deref() == Some(required.guid))
            .collect();
        if matching.is_empty() {
            problems.push(whole_file(
                "infra",
                format!("no role assignment grants {} ({})", required.name, required.guid),
            ));
            continue;
        }
        let fits = |a: &&Assignment<'_>| {
            !a.conditional
                && a.scope_type.as_deref() == Some(required.scope_type)
                && a.principal.to_ascii_lowercase().contains("identity")
        };
        if !matching.iter().any(fits) {
            // Report the closest miss: an unconditional one if there is one.
            let a = matching.iter().find(|a| !a.conditional).unwrap_or(&matching[0]);
            problems.push(a.file.problem(
                a.node,
                format!(
                    "{} must be granted to the app identity unconditionally with scope: <{}>; \
                     `{}` is {}scoped to {} for principal `{}`",
                    required.name,
                    required.scope_type,
                    a.symbol,
                    if a.conditional { "conditional and " } else { "" },
                    a.scope_type.as_deref().unwrap_or("(no resource in this file)"),
                    a.principal
                ),
            ));
        }
    }
    for a in &found {
        if let Some((_, name)) = FORBIDDEN_ROLES
            .iter()
            .find(|(guid, _)| a.role.as_deref() == Some(*guid))
        {
            problems.push(a.file.problem(
                a.node,
                format!("role assignment `{}` grants {name}: too broad for this app", a.symbol),
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// App settings
// ---------------------------------------------------------------------------

/// The app settings a Bicep expression produces.
#[derive(Debug, Default, Clone)]
pub struct AppSettings {
    /// Set on every path (e.g. both sides of a plan-dependent ternary), with the
    /// literal value when it is one.
    pub always: BTreeMap<String, Option<String>>,
    /// Set on at least one path.
    pub possible: BTreeMap<String, Option<String>>,
}

fn resolve_settings(
    file: &BicepFile,
    node: Node<'_>,
    vars: &HashMap<String, Node<'_>>,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> AppSettings {
    let mut out = AppSettings::default();
    if depth > 16 {
        problems.push(file.problem(node, "app settings expression nests too deeply"));
        return out;
    }
    match node.kind() {
        "object" => {
            for (key, key_node, value) in object_entries(file, node) {
                if key.contains(':') {
                    problems.push(file.problem(
                        key_node,
                        format!("app setting `{key}`: use `__` as the separator, not `:` (Linux and Flex reject it)"),
                    ));
                }
                let value = string_literal(file, value);
                out.always.insert(key.clone(), value.clone());
                out.possible.insert(key, value);
            }
        }
        "call_expression" => {
            let function = node.child_by_field_name("function").map(|f| file.text(f));
            if function != Some("union") {
                problems.push(file.problem(
                    node,
                    format!("cannot follow app settings through `{}`", function.unwrap_or("?")),
                ));
                return out;
            }
            if let Some(arguments) = node.child_by_field_name("arguments") {
                let mut cursor = arguments.walk();
                for arg in arguments.named_children(&mut cursor) {
                    let part = resolve_settings(file, arg, vars, depth + 1, problems);
                    out.always.extend(part.always);
                    out.possible.extend(part.possible);
                }
            }
        }
        "ternary_expression" => {
            let (Some(yes), Some(no)) = (
                node.child_by_field_name("consequence"),
                node.child_by_field_name("alternative"),
            ) else {
                return out;
            };
            let yes = resolve_settings(file, yes, vars, depth + 1, problems);
            let no = resolve_settings(file, no, vars, depth + 1, problems);
            for (k, v) in &yes.always {
                if let Some(w) = no.always.get(k) {
                    out.always.insert(k.clone(), if v == w { v.clone() } else { None });
                }
            }
            out.possible.extend(yes.possible);
            for (k, v) in no.possible {
                out.possible.entry(k).or_insert(v);
            }
        }
        "identifier" => match vars.get(file.text(node)) {
            Some(value) => return resolve_settings(file, *value, vars, depth + 1, problems),
            None => problems.push(file.problem(
                node,
                format!(
                    "app settings come from `{}`, which is not a variable of this file",
                    file.text(node)
                ),
            )),
        },
        "parenthesized_expression" => {
            let mut cursor = node.walk();
            let inner = node.named_children(&mut cursor).next();
            if let Some(inner) = inner {
                return resolve_settings(file, inner, vars, depth + 1, problems);
            }
        }
        other => problems.push(file.problem(node, format!("cannot follow app settings through a {other}"))),
    }
    out
}

/// The app settings declared by `Microsoft.Web/sites/config` resources named
/// `appsettings` (and by `siteConfig.appSettings` arrays of sites, if any).
pub fn collect_app_settings(infra: &Infra) -> (AppSettings, Vec<Problem>) {
    let mut settings = AppSettings::default();
    let mut problems = Vec::new();
    let mut sources = 0;
    for file in &infra.files {
        let vars = file.variables();
        for r in file.resources() {
            if r.existing {
                continue;
            }
            if r.type_name == "Microsoft.Web/sites/config"
                && lookup(file, r.body, &["name"])
                    .and_then(|n| string_literal(file, n))
                    .as_deref()
                    == Some("appsettings")
            {
                sources += 1;
                let Some(properties) = lookup(file, r.body, &["properties"]) else {
                    problems.push(file.problem(r.node, "appsettings config has no properties"));
                    continue;
                };
                let part = resolve_settings(file, properties, &vars, 0, &mut problems);
                settings.always.extend(part.always);
                settings.possible.extend(part.possible);
            }
            if r.type_name == "Microsoft.Web/sites" {
                if let Some(array) = lookup(file, r.body, &["properties", "siteConfig", "appSettings"]) {
                    sources += 1;
                    let mut cursor = array.walk();
                    for item in array.named_children(&mut cursor) {
                        let name = lookup(file, item, &["name"]).and_then(|n| string_literal(file, n));
                        let value = lookup(file, item, &["value"]).and_then(|n| string_literal(file, n));
                        if let Some(name) = name {
                            settings.always.insert(name.clone(), value.clone());
                            settings.possible.insert(name, value);
                        }
                    }
                }
            }
        }
    }
    if sources == 0 {
        problems.push(whole_file(
            "infra",
            "no app settings found (Microsoft.Web/sites/config named 'appsettings')",
        ));
    }
    (settings, problems)
}

/// Settings the Functions host reads for this app, from `host.json` and
/// `functions/*/function.json`: every `%NAME%` reference, and for every binding
/// `connection` C the identity-based `C__fullyQualifiedNamespace`.
pub fn host_referenced_settings(root: &Path) -> (BTreeMap<String, String>, Vec<Problem>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let host = root.join("host.json");
    if host.is_file() {
        files.push(host);
    } else {
        problems.push(whole_file(
            "host.json",
            "missing: the Functions app needs host.json at the repository root",
        ));
    }
    let functions = root.join("functions");
    let mut function_files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&functions) {
        for entry in entries.flatten() {
            let f = entry.path().join("function.json");
            if f.is_file() {
                function_files.push(f);
            }
        }
    }
    function_files.sort();
    if function_files.is_empty() {
        problems.push(whole_file(
            "functions",
            "no functions/*/function.json found (expected functions/ingest and functions/seal)",
        ));
    }
    files.extend(function_files);
    for path in files {
        let rel = relative(root, &path);
        let json: serde_json::Value = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                problems.push(whole_file(&rel, format!("cannot read JSON: {e}")));
                continue;
            }
        };
        let mut strings = Vec::new();
        collect_json_strings(&json, &mut strings);
        for s in strings {
            for name in percent_references(&s) {
                out.entry(name).or_insert_with(|| rel.clone());
            }
        }
        if let Some(bindings) = json.get("bindings").and_then(|b| b.as_array()) {
            for binding in bindings {
                if let Some(connection) = binding.get("connection").and_then(|c| c.as_str()) {
                    if !connection.is_empty() && !connection.contains('%') {
                        out.entry(format!("{connection}__fullyQualifiedNamespace"))
                            .or_insert_with(|| rel.clone());
                    }
                }
            }
        }
    }
    (out, problems)
}

fn collect_json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_json_strings(v, out)),
        _ => {}
    }
}

/// `%NAME%` references in a binding expression.
pub fn percent_references(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let name = &after[..end];
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            out.push(name.to_string());
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Settings the handler and the identity-based host connections need, whatever
/// the function files say.
pub const HANDLER_REQUIRED_SETTINGS: &[&str] = &[
    "HUB2LAKE_LAKE_URL",
    "AZURE_CLIENT_ID",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "EventHubConnection__fullyQualifiedNamespace",
    "EventHubConnection__credential",
    "EventHubConnection__clientId",
];

/// Settings that would mean a key or connection string is in use.
pub const KEY_BASED_SETTINGS: &[&str] = &[
    "AzureWebJobsStorage",
    "EventHubConnection",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
];

/// Every app setting the host and the handler need is set (see
/// [`HANDLER_REQUIRED_SETTINGS`] and [`host_referenced_settings`]); connections are
/// identity-based; `FUNCTIONS_WORKER_RUNTIME` is `custom` (on Flex Consumption the
/// runtime is `functionAppConfig.runtime.name: 'custom'` instead).
pub fn check_app_settings(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let (settings, mut problems) = collect_app_settings(&infra);
    let (referenced, host_problems) = host_referenced_settings(root);
    problems.extend(host_problems);

    let mut required: BTreeMap<String, String> = HANDLER_REQUIRED_SETTINGS
        .iter()
        .map(|s| (s.to_string(), "the handler / identity-based connections".to_string()))
        .collect();
    for (name, source) in referenced {
        required.entry(name).or_insert(source);
    }
    for (name, source) in &required {
        if !settings.always.contains_key(name) {
            let hint = if settings.possible.contains_key(name) {
                " on every hosting plan (it is set on only some)"
            } else {
                ""
            };
            problems.push(whole_file(
                "infra",
                format!("app setting `{name}` (needed by {source}) is not set{hint}"),
            ));
        }
    }
    if !settings.always.contains_key("AzureWebJobsStorage__accountName")
        && !settings.always.contains_key("AzureWebJobsStorage__blobServiceUri")
    {
        problems.push(whole_file(
            "infra",
            "app settings need AzureWebJobsStorage__accountName or AzureWebJobsStorage__blobServiceUri (identity-based host storage)",
        ));
    }
    for connection in ["AzureWebJobsStorage", "EventHubConnection"] {
        let key = format!("{connection}__credential");
        if let Some(Some(value)) = settings.always.get(&key) {
            if value != "managedidentity" {
                problems.push(whole_file(
                    "infra",
                    format!("app setting `{key}` is '{value}', must be 'managedidentity'"),
                ));
            }
        }
    }
    for key in KEY_BASED_SETTINGS {
        if settings.possible.contains_key(*key) {
            problems.push(whole_file(
                "infra",
                format!("app setting `{key}` holds a key or connection string; use the identity-based settings"),
            ));
        }
    }

    // The worker runtime: the app setting where it is allowed, the Flex runtime where not.
    let flex_sites: Vec<(&BicepFile, Resource<'_>)> = infra
        .resources()
        .into_iter()
        .filter(|(f, r)| {
            !r.existing
                && r.type_name == "Microsoft.Web/sites"
                && lookup(f, r.body, &["properties", "functionAppConfig"]).is_some()
        })
        .collect();
    for (file, site) in &flex_sites {
        let runtime = lookup(file, site.body, &["properties", "functionAppConfig", "runtime", "name"])
            .and_then(|n| string_literal(file, n));
        if runtime.as_deref() != Some("custom") {
            problems.push(file.problem(
                site.node,
                format!(
                    "Flex Consumption site `{}` must declare functionAppConfig.runtime.name = 'custom' (found {:?})",
                    site.symbol, runtime
                ),
            ));
        }
    }
    match settings.possible.get("FUNCTIONS_WORKER_RUNTIME") {
        Some(Some(value)) if value == "custom" => {
            if !settings.always.contains_key("FUNCTIONS_WORKER_RUNTIME") && flex_sites.is_empty() {
                problems.push(whole_file(
                    "infra",
                    "FUNCTIONS_WORKER_RUNTIME is set on only some plans and no Flex site declares runtime 'custom'",
                ));
            }
        }
        Some(other) => problems.push(whole_file(
            "infra",
            format!("FUNCTIONS_WORKER_RUNTIME must be 'custom', found {other:?}"),
        )),
        None => {
            if flex_sites.is_empty() {
                problems.push(whole_file(
                    "infra",
                    "FUNCTIONS_WORKER_RUNTIME (custom) is not set and no Flex site declares runtime 'custom'",
                ));
            }
        }
    }
    problems
}

/// `"HUB2LAKE_..."` string literals in a Rust source file.
pub fn hub2lake_literals(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(i) = rest.find("\"HUB2LAKE_") {
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if after[len..].starts_with('"') {
            out.insert(after[..len].to_string());
        }
        rest = &after[len..];
    }
    out
}

/// The handler's source files that declare `HUB2LAKE_*` settings: the product settings,
/// and the log stream's (`HUB2LAKE_LOG_*`).
pub const SETTINGS_SOURCES: &[&str] = &["handler/src/config.rs", "handler/src/telemetry/settings.rs"];

/// Every `HUB2LAKE_*` app setting in the Bicep is a setting `handler/src/config.rs`
/// or `handler/src/telemetry/settings.rs`
/// knows (a typo guard: an unknown name would be silently ignored at run time).
pub fn check_hub2lake_settings_known(root: &Path) -> Vec<Problem> {
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let (settings, mut problems) = collect_app_settings(&infra);
    let config_rel = SETTINGS_SOURCES[0];
    let mut known = BTreeSet::new();
    for rel in SETTINGS_SOURCES {
        match std::fs::read_to_string(root.join(rel)) {
            Ok(source) => {
                let found = hub2lake_literals(&source);
                if found.is_empty() {
                    problems.push(whole_file(rel, "no \"HUB2LAKE_...\" string literals found"));
                }
                known.extend(found);
            }
            // The log stream's settings file is optional in a sandbox; config.rs is not.
            Err(e) if *rel == config_rel || e.kind() != std::io::ErrorKind::NotFound => {
                problems.push(whole_file(rel, format!("cannot read: {e}")));
                return problems;
            }
            Err(_) => {}
        }
    }
    for name in settings.possible.keys().filter(|k| k.starts_with("HUB2LAKE_")) {
        if !known.contains(name) {
            problems.push(whole_file(
                "infra",
                format!(
                    "app setting `{name}` is not a setting the handler knows ({})",
                    SETTINGS_SOURCES.join(", ")
                ),
            ));
        }
    }
    problems
}

/// `infra/main.parameters.json` names only parameters `infra/main.bicep` declares,
/// gives every parameter without a default, and uses the azd placeholders for the
/// environment name and location.
pub fn check_parameters_file(root: &Path) -> Vec<Problem> {
    let rel = "infra/main.parameters.json";
    let main_rel = "infra/main.bicep";
    let main = match BicepFile::load(&root.join(main_rel), main_rel) {
        Ok(f) => f,
        Err(p) => return vec![p],
    };
    let json: serde_json::Value = match std::fs::read_to_string(root.join(rel))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return vec![whole_file(rel, format!("cannot read JSON: {e}"))],
    };
    let mut problems = Vec::new();
    let Some(parameters) = json.get("parameters").and_then(|p| p.as_object()) else {
        return vec![whole_file(rel, "no \"parameters\" object")];
    };
    let declared: BTreeMap<String, bool> = main.params().into_iter().map(|p| (p.name, p.has_default)).collect();
    for (name, value) in parameters {
        if !declared.contains_key(name) {
            problems.push(whole_file(
                rel,
                format!("parameter `{name}` is not declared in {main_rel}"),
            ));
        }
        if value.get("value").is_none() && value.get("reference").is_none() {
            problems.push(whole_file(
                rel,
                format!("parameter `{name}` has neither \"value\" nor \"reference\""),
            ));
        }
    }
    for (name, has_default) in &declared {
        if !has_default && !parameters.contains_key(name) {
            problems.push(whole_file(
                rel,
                format!("required parameter `{name}` of {main_rel} (no default) is missing"),
            ));
        }
    }
    for (name, placeholder) in [
        ("environmentName", "${AZURE_ENV_NAME}"),
        ("location", "${AZURE_LOCATION}"),
    ] {
        if declared.contains_key(name) {
            let value = parameters
                .get(name)
                .and_then(|v| v.get("value"))
                .and_then(|v| v.as_str());
            if value != Some(placeholder) {
                problems.push(whole_file(
                    rel,
                    format!("parameter `{name}` must be \"{placeholder}\" (azd), found {value:?}"),
                ));
            }
        }
    }
    problems
}

/// The service names under `services:` in `azure.yaml`, with their `key: value`
/// lines (a deliberately small reader: two-space block YAML as azd writes it).
pub fn azure_yaml_services(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let content = line.split(" #").next().unwrap_or("").trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        let body = content.trim();
        if indent == 0 {
            in_services = body == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 && body.ends_with(':') {
            let name = body.trim_end_matches(':').to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if indent == 4 {
            if let (Some(service), Some((k, v))) = (&current, body.split_once(':')) {
                out.entry(service.clone())
                    .or_default()
                    .insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
    }
    out
}

/// `azure.yaml` deploys a Functions service whose name matches the
/// `azd-service-name` tag the Bicep puts on the function app, and every
/// `abbrs.<key>` used by `infra/main.bicep` exists in `infra/abbreviations.json`.
pub fn check_azd_project(root: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let infra = match Infra::load(root) {
        Ok(infra) => infra,
        Err(problems) => return problems,
    };
    let yaml_rel = "azure.yaml";
    match std::fs::read_to_string(root.join(yaml_rel)) {
        Err(e) => problems.push(whole_file(yaml_rel, format!("cannot read: {e}"))),
        Ok(text) => {
            let services = azure_yaml_services(&text);
            let functions: Vec<(&String, &BTreeMap<String, String>)> = services
                .iter()
                .filter(|(_, props)| props.get("host").map(String::as_str) == Some("function"))
                .collect();
            if functions.is_empty() {
                problems.push(whole_file(yaml_rel, "no service with `host: function`"));
            }
            // The tag value: the serviceName parameter default of function-app.bicep.
            let tag = infra.file("modules/function-app.bicep").and_then(|file| {
                file.top_level()
                    .into_iter()
                    .filter(|n| n.kind() == "parameter_declaration")
                    .find(|n| {
                        let mut c = n.walk();
                        let first = n.named_children(&mut c).next();
                        first.is_some_and(|f| file.text(f) == "serviceName")
                    })
                    .and_then(|n| {
                        let mut c = n.walk();
                        let last = n.named_children(&mut c).last();
                        last.and_then(|v| string_literal(file, v))
                    })
            });
            for (name, props) in &functions {
                if tag.as_deref() != Some(name.as_str()) {
                    problems.push(whole_file(
                        yaml_rel,
                        format!(
                            "service `{name}` does not match the function app's azd-service-name tag ({tag:?}, serviceName in infra/modules/function-app.bicep)"
                        ),
                    ));
                }
                if props.get("dist").is_none_or(|d| d.is_empty()) {
                    problems.push(whole_file(yaml_rel, format!("service `{name}` has no `dist`")));
                }
            }
        }
    }
    let abbr_rel = "infra/abbreviations.json";
    let abbreviations: BTreeSet<String> = match std::fs::read_to_string(root.join(abbr_rel))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).map_err(|e| e.to_string()))
    {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        Ok(_) => {
            problems.push(whole_file(abbr_rel, "not a JSON object"));
            return problems;
        }
        Err(e) => {
            problems.push(whole_file(abbr_rel, format!("cannot read JSON: {e}")));
            return problems;
        }
    };
    if let Some(main) = infra.file("main.bicep") {
        for member in main.nodes_of_kind("member_expression") {
            let (Some(object), Some(property)) = (
                member.child_by_field_name("object"),
                member.child_by_field_name("property"),
            ) else {
                continue;
            };
            if main.text(object) == "abbrs" && !abbreviations.contains(main.text(property)) {
                problems.push(main.problem(member, format!("`{}` is not a key of {abbr_rel}", main.text(member))));
            }
        }
    }
    problems
}

/// Every check, in order.
pub fn check_all(root: &Path) -> Vec<Problem> {
    let mut problems = check_syntax(root);
    problems.extend(check_module_wiring(root));
    problems.extend(check_security(root));
    problems.extend(check_role_assignments(root));
    problems.extend(check_app_settings(root));
    problems.extend(check_hub2lake_settings_known(root));
    problems.extend(check_parameters_file(root));
    problems.extend(check_azd_project(root));
    problems.extend(check_first_deploy(root));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_references_finds_names_between_percent_signs() {
        assert_eq!(percent_references("%EVENTHUB_NAME%"), vec!["EVENTHUB_NAME"]);
        assert_eq!(percent_references("a %A% b %B_2%"), vec!["A", "B_2"]);
        assert!(percent_references("100% sure").is_empty());
        assert!(percent_references("0 */5 * * * *").is_empty());
    }

    #[test]
    fn hub2lake_literals_reads_only_complete_string_literals() {
        let src = r#"lookup("HUB2LAKE_A", x); let s = "HUB2LAKE_B_2"; // HUB2LAKE_C
            let t = "HUB2LAKE_D is a sentence";"#;
        let found: Vec<String> = hub2lake_literals(src).into_iter().collect();
        assert_eq!(found, vec!["HUB2LAKE_A", "HUB2LAKE_B_2"]);
    }

    #[test]
    fn guid_shape_is_recognised() {
        assert!(is_guid(roles::OWNER));
        assert!(!is_guid("not-a-guid"));
    }
}
