//! Roles: the files of a Go module app that a scenario names by what they are (`{main_go}`, `{go_mod}`, `{go_sum}`, `{any_go}`), found by the same rules in any layout.

use std::path::{Path, PathBuf};

/// A file of the app named by what it is rather than by where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The `.go` file holding `func main` of the app's main package.
    MainGo,
    /// The module's `go.mod`.
    GoMod,
    /// The module's `go.sum`.
    GoSum,
    /// A `.go` file other than `{main_go}` when the app has one.
    AnyGo,
}

/// The value of `bump-module`'s `module` that names the first direct requirement of go.mod.
pub const FIRST_DIRECT_DEPENDENCY: &str = "{first_direct_dependency}";

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no non-test .go file declares `package main` with `func main(` (vendor/, testdata/, hidden and `_` folders, nested modules and `//go:build ignore` files are not searched)")]
    NoMainPackage,
    #[error("the app has no non-test .go file (vendor/, testdata/, hidden and `_` folders and nested modules are not searched)")]
    NoGoFile,
    #[error("the app has no {0} at its root")]
    Missing(&'static str),
    #[error("{0} requires no module without `// indirect`")]
    NoDirectRequirement(PathBuf),
    #[error("failed to read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Role {
    pub const ALL: [Role; 4] = [Role::MainGo, Role::GoMod, Role::GoSum, Role::AnyGo];

    /// The name written between braces in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            Role::MainGo => "main_go",
            Role::GoMod => "go_mod",
            Role::GoSum => "go_sum",
            Role::AnyGo => "any_go",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The file this role names in the app at `root`, relative to it with `/` separators.
    pub fn resolve(self, root: &Path) -> Result<String, RoleError> {
        match self {
            Role::GoMod => root_file(root, "go.mod"),
            Role::GoSum => root_file(root, "go.sum"),
            Role::MainGo => main_go(&go_files(root)?).ok_or(RoleError::NoMainPackage),
            Role::AnyGo => {
                let files = go_files(root)?;
                let main = main_go(&files);
                let other = files.iter().find(|f| Some(&f.path) != main.as_ref()).or(files.first());
                other.map(|f| f.path.clone()).ok_or(RoleError::NoGoFile)
            }
        }
    }
}

/// The names inside `{…}` in `text`, in order (`{nonce}` included).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                names.push(&after[..close]);
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    names
}

/// `path` with every `{role}` replaced by the file it names in the app at
/// `root`; on failure, the role (with its braces) and why.
pub fn fill(path: &str, root: &Path) -> Result<String, (String, RoleError)> {
    let mut filled = path.to_string();
    for name in placeholders(path) {
        if let Some(role) = Role::from_name(name) {
            let file = role.resolve(root).map_err(|e| (format!("{{{name}}}"), e))?;
            filled = filled.replace(&format!("{{{name}}}"), &file);
        }
    }
    Ok(filled)
}

fn root_file(root: &Path, name: &'static str) -> Result<String, RoleError> {
    if root.join(name).is_file() {
        Ok(name.to_string())
    } else {
        Err(RoleError::Missing(name))
    }
}

/// A `.go` file the Go tool would build, with what its source says.
#[derive(Debug, Clone)]
struct GoFile {
    /// Relative to the app, `/`-separated.
    path: String,
    has_main: bool,
}

/// The first file that declares `package main` and `func main(`.
fn main_go(files: &[GoFile]) -> Option<String> {
    files.iter().find(|f| f.has_main).map(|f| f.path.clone())
}

/// Every non-test `.go` file of the module at `root`, shallowest first, then
/// in lexicographic order of the path. Skipped as the Go tool skips them:
/// `vendor/` and `testdata/` folders, folders and files whose names start
/// with `.` or `_`, folders holding their own `go.mod` (another module),
/// `_test.go` files and files whose build constraint is `ignore`. Symlinks
/// are not followed.
fn go_files(root: &Path) -> Result<Vec<GoFile>, RoleError> {
    let skipped_dir = |entry: &walkdir::DirEntry| {
        let name = entry.file_name().to_string_lossy();
        entry.depth() > 0
            && entry.file_type().is_dir()
            && (name.starts_with('.') || name.starts_with('_') || name == "vendor" || name == "testdata" || entry.path().join("go.mod").exists())
    };
    let mut found: Vec<(usize, String, PathBuf)> = Vec::new();
    for entry in walkdir::WalkDir::new(root).into_iter().filter_entry(|e| !skipped_dir(e)) {
        let entry = entry.map_err(|e| RoleError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        let name = entry.file_name().to_string_lossy();
        let go_source = name.ends_with(".go") && !name.ends_with("_test.go") && !name.starts_with('.') && !name.starts_with('_');
        if !entry.file_type().is_file() || !go_source {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else { continue };
        let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        found.push((rel.len(), rel.join("/"), entry.path().to_path_buf()));
    }
    found.sort();
    let mut files = Vec::new();
    for (_, rel, path) in found {
        let bytes = std::fs::read(&path).map_err(|source| RoleError::Io { path: path.clone(), source })?;
        let source = String::from_utf8_lossy(&bytes);
        let Some((header, package)) = package_clause(&source) else { continue };
        if build_ignored(header) {
            continue;
        }
        files.push(GoFile {
            path: rel,
            has_main: package == "main" && declares_func_main(&source),
        });
    }
    Ok(files)
}

/// The text before the package clause (comments only) and the package name.
fn package_clause(source: &str) -> Option<(&str, &str)> {
    let mut rest = source.strip_prefix('\u{feff}').unwrap_or(source);
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.split_once('\n').map_or("", |(_, next)| next);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/")?.1;
        } else {
            break;
        }
    }
    let header = &source[..source.len() - rest.len()];
    let after = rest.strip_prefix("package")?;
    if !after.starts_with(char::is_whitespace) {
        return None;
    }
    let after = after.trim_start();
    let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
    (end > 0).then(|| (header, &after[..end]))
}

/// `//go:build ignore` (or the older `// +build ignore`) before the package clause.
fn build_ignored(header: &str) -> bool {
    header.lines().map(str::trim).any(|line| {
        line.strip_prefix("//go:build").or_else(|| line.strip_prefix("// +build")).is_some_and(|expr| expr.trim() == "ignore")
    })
}

/// A top-level `func main(` (as gofmt writes it, spaces allowed).
fn declares_func_main(source: &str) -> bool {
    source.lines().any(|line| {
        line.strip_prefix("func")
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .map(|rest| rest.trim_start())
            .and_then(|rest| rest.strip_prefix("main"))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const MAIN: &str = "package main\n\nfunc main() {}\n";

    #[test]
    fn main_go_is_the_shallowest_main_then_the_first_by_name() {
        let a = app(&[
            ("go.mod", "module x\n"),
            ("cmd/tool/main.go", MAIN),
            ("cmd/server/main.go", "// Package main serves.\npackage main\n\nimport \"x/internal/api\"\n\nfunc main() { api.Run() }\n"),
            ("cmd/server/flags.go", "package main\n\nvar port = 8080\n"),
            ("internal/api/api.go", "package api\n\nfunc Run() {}\n"),
            ("internal/api/api_test.go", "package api\n"),
            ("tools/deep/gen/main.go", MAIN),
        ]);
        assert_eq!(Role::MainGo.resolve(a.path()).unwrap(), "cmd/server/main.go");
        // Shallowest first: one at the root wins over cmd/.
        std::fs::write(a.path().join("app.go"), "package main\n\nfunc main () {}\n").unwrap();
        assert_eq!(Role::MainGo.resolve(a.path()).unwrap(), "app.go");
    }

    #[test]
    fn files_the_go_tool_skips_are_never_chosen() {
        let a = app(&[
            ("go.mod", "module x\n"),
            ("gen.go", "//go:build ignore\n\npackage main\n\nfunc main() {}\n"),
            ("main_test.go", MAIN),
            ("_scratch/main.go", MAIN),
            (".hidden/main.go", MAIN),
            ("vendor/v.io/main.go", MAIN),
            ("testdata/main.go", MAIN),
            ("nested/go.mod", "module y\n"),
            ("nested/main.go", MAIN),
            ("lib/doc.go", "/* package main\nfunc main() */\npackage lib\n"),
            ("srv/run/server.go", "/* a server */ package main\n\nfunc main() {\n}\n"),
        ]);
        assert_eq!(Role::MainGo.resolve(a.path()).unwrap(), "srv/run/server.go");
        assert_eq!(Role::AnyGo.resolve(a.path()).unwrap(), "lib/doc.go");
    }

    #[test]
    fn any_go_differs_from_main_go_when_it_can() {
        let a = app(&[("go.mod", "module x\n"), ("main.go", MAIN), ("internal/b/b.go", "package b\n"), ("internal/a/a.go", "package a\n")]);
        assert_eq!(Role::AnyGo.resolve(a.path()).unwrap(), "internal/a/a.go");
        let single = app(&[("go.mod", "module x\n"), ("main.go", MAIN)]);
        assert_eq!(Role::AnyGo.resolve(single.path()).unwrap(), "main.go");
        let library = app(&[("go.mod", "module x\n"), ("lib.go", "package lib\n")]);
        assert_eq!(Role::AnyGo.resolve(library.path()).unwrap(), "lib.go");
        assert!(matches!(Role::MainGo.resolve(library.path()), Err(RoleError::NoMainPackage)));
    }

    #[test]
    fn module_files_resolve_only_when_present() {
        let a = app(&[("go.mod", "module x\n"), ("main.go", MAIN)]);
        assert_eq!(Role::GoMod.resolve(a.path()).unwrap(), "go.mod");
        let err = Role::GoSum.resolve(a.path()).unwrap_err();
        assert!(err.to_string().contains("go.sum"), "{err}");
        let empty = app(&[("README.md", "hi\n")]);
        assert!(matches!(Role::AnyGo.resolve(empty.path()), Err(RoleError::NoGoFile)));
    }

    #[test]
    fn symlinked_sources_and_folders_are_not_followed() {
        let outside = app(&[("main.go", MAIN)]);
        let a = app(&[("go.mod", "module x\n"), ("lib/lib.go", "package lib\n")]);
        std::os::unix::fs::symlink(outside.path(), a.path().join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("main.go"), a.path().join("main.go")).unwrap();
        assert!(matches!(Role::MainGo.resolve(a.path()), Err(RoleError::NoMainPackage)));
    }

    #[test]
    fn fill_replaces_every_role_and_leaves_other_text() {
        let a = app(&[("go.mod", "module x\n"), ("cmd/api/main.go", MAIN)]);
        assert_eq!(fill("{main_go}", a.path()).unwrap(), "cmd/api/main.go");
        assert_eq!(fill("copy-of-{go_mod}.txt", a.path()).unwrap(), "copy-of-go.mod.txt");
        assert_eq!(fill("plain/path.go", a.path()).unwrap(), "plain/path.go");
        let (role, err) = fill("{go_sum}", a.path()).unwrap_err();
        assert_eq!(role, "{go_sum}");
        assert!(matches!(err, RoleError::Missing("go.sum")));
        assert_eq!(placeholders("a{b}c{d}{"), ["b", "d"]);
    }
}
