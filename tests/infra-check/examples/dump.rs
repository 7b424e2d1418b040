//! Prints the tree-sitter syntax tree of a Bicep file:
//! `cargo run -p hub2lake-infra-check --example dump -- infra/main.bicep`

use tree_sitter::TreeCursor;

fn print(cursor: &mut TreeCursor<'_>, source: &str, depth: usize) {
    let node = cursor.node();
    let text: String = source[node.byte_range()]
        .chars()
        .take(60)
        .collect::<String>()
        .replace('\n', "⏎");
    let field = cursor.field_name().map(|f| format!("{f}: ")).unwrap_or_default();
    let mark = if node.is_error() || node.is_missing() {
        "  <-- ERROR"
    } else {
        ""
    };
    if node.is_named() || node.is_missing() {
        println!("{}{field}{} {text:?}{mark}", "  ".repeat(depth), node.kind());
    }
    if cursor.goto_first_child() {
        loop {
            print(cursor, source, depth + 1);
            if !cursor.goto_next_sibling() {
                break;
            }
        }
        cursor.goto_parent();
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: dump <file.bicep>");
    let source = std::fs::read_to_string(&path).expect("readable file");
    let file = hub2lake_infra_check::BicepFile::from_source(path.as_ref(), &path, source.clone());
    print(&mut file.root().walk(), &source, 0);
    if let Some(problem) = file.first_syntax_error() {
        println!("{problem}");
    }
}
