//! Records the source commit layerbench is built from (for the provenance in results), so an installed binary needs no source tree to say it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    for watched in ["src", "scenarios", "sample-go-app", "scripts", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let commit = git(&["rev-parse", "HEAD"]).map(|c| {
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        format!("{c}{}", if dirty { "+dirty" } else { "" })
    });
    println!("cargo:rustc-env=LAYERBENCH_GIT_COMMIT={}", commit.unwrap_or_default());
}
