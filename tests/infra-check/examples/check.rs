//! Runs every infra check and prints the problems:
//! `cargo run -p hub2lake-infra-check --example check [repository root]`

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(hub2lake_infra_check::repo_root);
    let problems = hub2lake_infra_check::check_all(&root);
    if !problems.is_empty() {
        println!("{}", hub2lake_infra_check::report(&problems));
    }
    println!("{} problem(s)", problems.len());
    std::process::exit(if problems.is_empty() { 0 } else { 1 });
}
