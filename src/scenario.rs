//! Scenario files: named, ordered steps of changes to a scratch copy of an app, each followed by one build.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gomod::modfile::Version;
use crate::roles::{self, Role, FIRST_DIRECT_DEPENDENCY};
use crate::toml_lines::{self, At};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("failed to read scenario file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no scenario named `{name}` in {dir} (available: {available})")]
    Unknown {
        name: String,
        dir: PathBuf,
        available: String,
    },
}

/// A scenario: what changes, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Written for the bundled sample (its module versions, its build argument): left out of a run on another app unless named.
    #[serde(default)]
    pub sample_only: bool,
    /// `module@version`s the module proxy hides until a `publish-module` change publishes them.
    #[serde(default)]
    pub unpublished: Vec<String>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// One step: its changes, applied in order, then one build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default, rename = "change")]
    pub changes: Vec<Change>,
}

/// One change to the scratch copy. Texts may contain `{nonce}`, replaced by
/// a value unique to the cell, so that an edit is new to the build cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// Append text to a file.
    Append { file: String, text: String },
    /// Replace the first occurrence of `pattern` (which must occur) with `with`.
    Replace { file: String, pattern: String, with: String },
    /// Write a file (created or overwritten).
    Write { file: String, text: String },
    /// Delete a file.
    Delete { file: String },
    /// Set a file's modification time to now; its content is unchanged.
    Touch { file: String },
    /// Set a file's permission bits, written in octal (`"0755"`).
    Chmod { file: String, mode: String },
    /// Commit everything in the scratch repository.
    GitCommit { message: String },
    /// Replace the first occurrence of `pattern` (which must occur) in the variant's Dockerfile.
    DockerfileReplace { pattern: String, with: String },
    /// Move the Dockerfile line that contains `line` to just before the line that contains `before`.
    DockerfileMove { line: String, before: String },
    /// Point a required module at another version held by the module store,
    /// rewriting go.mod and go.sum consistently.
    BumpModule { module: String, version: String },
    /// Set a build argument for this build and the ones after it.
    BuildArg { name: String, value: String },
    /// The module proxy starts serving a version listed in the scenario's `unpublished`; no file changes.
    PublishModule { module: String, version: String },
    /// Rename (move) a file, folder or symlink; `to` must not exist yet (its folders are created).
    Rename { from: String, to: String },
    /// Create a folder and its missing parents; it must not exist yet.
    Mkdir { dir: String },
    /// Create a symlink at `link` holding `target`, a relative path that must resolve inside the app.
    Symlink { link: String, target: String },
    /// Set the numeric owner (`"uid:gid"`) of a file, folder or symlink (the link itself).
    Chown { file: String, owner: String },
}

impl Change {
    /// The change's `kind` as a scenario file writes it (`append`, `bump-module`, ...).
    pub fn kind(&self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string)).unwrap_or_default()
    }

    /// The keys of this change that name a path in the app (roles allowed), with their values.
    pub fn paths(&self) -> Vec<(&'static str, &str)> {
        match self {
            Change::Append { file, .. }
            | Change::Replace { file, .. }
            | Change::Write { file, .. }
            | Change::Delete { file }
            | Change::Touch { file }
            | Change::Chmod { file, .. }
            | Change::Chown { file, .. } => vec![("file", file)],
            Change::Rename { from, to } => vec![("from", from), ("to", to)],
            Change::Mkdir { dir } => vec![("dir", dir)],
            Change::Symlink { link, .. } => vec![("link", link)],
            Change::GitCommit { .. }
            | Change::DockerfileReplace { .. }
            | Change::DockerfileMove { .. }
            | Change::BumpModule { .. }
            | Change::BuildArg { .. }
            | Change::PublishModule { .. } => Vec::new(),
        }
    }

    /// What is wrong with this change as written, if anything, and the key it is wrong in (checked before any file is touched).
    fn problem(&self) -> Option<(&'static str, String)> {
        for (key, value) in self.paths() {
            if let Some(problem) = path_problem(value) {
                return Some((key, format!("`{key}` = `{value}` {problem}")));
            }
            if let Some(name) = roles::placeholders(value).into_iter().find(|n| Role::from_name(n).is_none()) {
                let known: Vec<String> = Role::ALL.iter().map(|r| format!("{{{}}}", r.name())).collect();
                return Some((key, format!("`{key}` = `{value}` names `{{{name}}}`, which is not a role (roles: {})", known.join(", "))));
            }
        }
        match self {
            Change::Chmod { mode, .. } if u32::from_str_radix(mode, 8).is_err() => Some(("mode", format!("chmod mode `{mode}` is not octal"))),
            Change::Chown { owner, .. } if parse_owner(owner).is_none() => {
                Some(("owner", format!("chown owner `{owner}` is not numeric `uid:gid` (such as \"1000:1000\")")))
            }
            Change::Symlink { target, .. } if target.is_empty() || Path::new(target).is_absolute() => {
                Some(("target", format!("symlink target `{target}` must be a relative path (it must resolve inside the app)")))
            }
            Change::BumpModule { module, .. } if module.contains('{') && module != FIRST_DIRECT_DEPENDENCY => Some((
                "module",
                format!("bump-module module `{module}`: the only role a module may be named by is `{FIRST_DIRECT_DEPENDENCY}`"),
            )),
            Change::BumpModule { version, .. } if version != NEXT_VERSION && Version::parse(version).is_none() => Some((
                "version",
                format!("bump-module version `{version}` is neither `{NEXT_VERSION}` nor a module version such as `v1.2.3`"),
            )),
            _ => None,
        }
    }
}

/// The value of `bump-module`'s `version` that picks the next newer release.
pub const NEXT_VERSION: &str = "next";

/// Parses a numeric `"uid:gid"` owner.
pub fn parse_owner(owner: &str) -> Option<(u32, u32)> {
    let (uid, gid) = owner.split_once(':')?;
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u32>().ok()).flatten();
    Some((number(uid)?, number(gid)?))
}

/// Why a scenario path may not be used as written: empty, absolute, or going up with `..`.
pub fn path_problem(path: &str) -> Option<&'static str> {
    let p = Path::new(path);
    if path.trim().is_empty() {
        Some("is empty")
    } else if p.is_absolute() {
        Some("is absolute; scenario paths are relative to the app folder")
    } else if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        Some("goes up with `..`; scenario paths stay inside the app folder")
    } else {
        None
    }
}

impl Scenario {
    /// Parses scenario text; every error names the file, the line and what is wrong.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let bad = |message: String| ScenarioError::Parse {
            path: path.to_path_buf(),
            message: toml_lines::one_line(&message),
        };
        let scenario: Scenario = toml::from_str(text).map_err(|e| bad(toml_lines::describe(text, &e)))?;
        let at = |place: &[At], message: String| bad(format!("line {}: {message}", toml_lines::line_near(text, place)));
        if scenario.name.trim().is_empty() {
            return Err(at(&[At::Key("name")], "`name` is empty".into()));
        }
        if scenario.steps.is_empty() {
            return Err(at(&[At::Key("step")], "a scenario needs at least one [[step]]".into()));
        }
        for (i, u) in scenario.unpublished.iter().enumerate() {
            if u.split_once('@').is_none_or(|(m, v)| m.is_empty() || v.is_empty()) {
                return Err(at(&[At::Key("unpublished"), At::Index(i)], format!("`unpublished` entry `{u}` is not module@version")));
            }
        }
        for (i, step) in scenario.steps.iter().enumerate() {
            if step.name.trim().is_empty() || step.name == "baseline" {
                return Err(at(&[At::Key("step"), At::Index(i), At::Key("name")], format!("step {} needs a name other than `baseline`", i + 1)));
            }
            if scenario.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(at(&[At::Key("step"), At::Index(i), At::Key("name")], format!("two steps are named `{}`", step.name)));
            }
            for (j, change) in step.changes.iter().enumerate() {
                let change_at = |key: &'static str| [At::Key("step"), At::Index(i), At::Key("change"), At::Index(j), At::Key(key)];
                if let Some((key, problem)) = change.problem() {
                    return Err(at(&change_at(key), format!("step `{}`: {problem}", step.name)));
                }
                if let Change::PublishModule { module, version } = change {
                    if !scenario.unpublished.contains(&format!("{module}@{version}")) {
                        return Err(at(
                            &change_at("version"),
                            format!("step `{}` publishes {module}@{version}, which `unpublished` does not list", step.name),
                        ));
                    }
                }
            }
        }
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, path)
    }
}

/// Every `*.toml` scenario in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScenarioError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut scenarios = Vec::new();
    for p in paths {
        scenarios.push(Scenario::load(&p)?);
    }
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scenarios)
}

/// The scenarios named in `names` (all of them when `names` is empty), in the order given.
pub fn select(dir: &Path, names: &[String]) -> Result<Vec<Scenario>, ScenarioError> {
    pick(load_dir(dir)?, names, |s| s.name.as_str()).map_err(|u| ScenarioError::Unknown { name: u.name, dir: dir.to_path_buf(), available: u.available })
}

/// A name [`pick`] did not find, and every name there is.
pub struct Unknown {
    pub name: String,
    pub available: String,
}

/// The items named in `names`, in that order (every item when `names` is empty), or the first name none has.
pub fn pick<T: Clone>(all: Vec<T>, names: &[String], name_of: fn(&T) -> &str) -> Result<Vec<T>, Unknown> {
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|x| name_of(x) == n).cloned().ok_or_else(|| Unknown { name: n.clone(), available: all.iter().map(name_of).collect::<Vec<_>>().join(", ") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_with_every_change_kind_parses() {
        let text = r#"
name = "all"
description = "every change"
unpublished = ["m@v2"]
[[step]]
name = "one"
change = [
  { kind = "append", file = "a.go", text = "// {nonce}" },
  { kind = "replace", file = "a.go", pattern = "x", with = "y" },
  { kind = "write", file = "b.txt", text = "hi" },
  { kind = "delete", file = "b.txt" },
  { kind = "touch", file = "a.go" },
  { kind = "chmod", file = "a.go", mode = "0755" },
  { kind = "git-commit", message = "m" },
  { kind = "dockerfile-replace", pattern = "a", with = "b" },
  { kind = "dockerfile-move", line = "COPY . .", before = "RUN go mod download" },
  { kind = "bump-module", module = "github.com/BurntSushi/toml", version = "v1.3.2" },
  { kind = "build-arg", name = "X", value = "1" },
  { kind = "publish-module", module = "m", version = "v2" },
  { kind = "rename", from = "{any_go}", to = "moved/{any_go}" },
  { kind = "mkdir", dir = "empty" },
  { kind = "symlink", link = "sub/l", target = "../x.go" },
  { kind = "chown", file = "{main_go}", owner = "1000:1000" },
  { kind = "bump-module", module = "{first_direct_dependency}", version = "next" },
]
"#;
        let s = Scenario::parse(text, Path::new("all.toml")).unwrap();
        assert_eq!(s.steps[0].changes.len(), 17);
        assert_eq!(s.steps[0].changes[12], Change::Rename { from: "{any_go}".into(), to: "moved/{any_go}".into() });
        assert_eq!(s.steps[0].changes[15], Change::Chown { file: "{main_go}".into(), owner: "1000:1000".into() });
    }

    #[test]
    fn typos_in_the_new_change_kinds_name_the_line_and_key() {
        for (change, key) in [
            ("{ kind = \"symlink\", link = \"a\", targt = \"b\" }", "targt"),
            ("{ kind = \"rename\", form = \"a\", to = \"b\" }", "form"),
            ("{ kind = \"mkdir\", directory = \"a\" }", "directory"),
            ("{ kind = \"chown\", file = \"a\", user = \"1:1\" }", "user"),
        ] {
            let text = format!("name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"s\"\nchange = [\n  {{ kind = \"mkdir\", dir = \"x\" }},\n  {change},\n]\n");
            let err = Scenario::parse(&text, Path::new("new.toml")).unwrap_err().to_string();
            assert!(err.contains("new.toml") && err.contains("line 7") && err.contains(key), "{err}");
        }
    }

    #[test]
    fn bad_paths_owners_roles_and_versions_are_refused_when_read() {
        let parse = |change: &str| {
            let text = format!("name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"the-step\"\nchange = [{change}]\n");
            Scenario::parse(&text, Path::new("bad.toml")).map(|_| ()).map_err(|e| e.to_string())
        };
        for (change, problem) in [
            ("{ kind = \"touch\", file = \"../go.mod\" }", "`..`"),
            ("{ kind = \"rename\", from = \"a\", to = \"/tmp/a\" }", "absolute"),
            ("{ kind = \"mkdir\", dir = \"\" }", "empty"),
            ("{ kind = \"append\", file = \"{main-go}\", text = \"x\" }", "not a role"),
            ("{ kind = \"touch\", file = \"{nonce}.txt\" }", "not a role"),
            ("{ kind = \"chown\", file = \"a\", owner = \"root:root\" }", "uid:gid"),
            ("{ kind = \"chown\", file = \"a\", owner = \"1000\" }", "uid:gid"),
            ("{ kind = \"symlink\", link = \"a\", target = \"/etc\" }", "relative"),
            ("{ kind = \"bump-module\", module = \"{first_dependency}\", version = \"next\" }", "{first_direct_dependency}"),
            ("{ kind = \"bump-module\", module = \"m\", version = \"newest\" }", "neither `next`"),
        ] {
            let err = parse(change).unwrap_err();
            assert!(err.contains("bad.toml") && err.contains("line 5") && err.contains("the-step") && err.contains(problem), "{change}: {err}");
        }
        assert!(parse("{ kind = \"chown\", file = \"{any_go}\", owner = \"0:65534\" }").is_ok());
        assert_eq!(parse_owner("1000:1000"), Some((1000, 1000)));
        assert_eq!(parse_owner("+1:1"), None);
    }

    #[test]
    fn a_typo_is_refused_with_file_line_and_key() {
        let text = "name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"s\"\n[[step.change]]\nkind = \"append\"\nfile = \"a.go\"\ntxet = \"x\"\n";
        let err = Scenario::parse(text, Path::new("scenarios/typo.toml")).unwrap_err().to_string();
        assert!(err.contains("scenarios/typo.toml"), "{err}");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("txet"), "{err}");
        let inline = "name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"s\"\nchange = [\n  { kind = \"touch\", file = \"a\" },\n  { kind = \"append\", file = \"a.go\", txet = \"x\" },\n]\n";
        let err = Scenario::parse(inline, Path::new("inline.toml")).unwrap_err().to_string();
        assert!(err.contains("inline.toml") && err.contains("line 7") && err.contains("txet"), "{err}");
        let err = Scenario::parse("name = \"t\"\ndescripton = \"d\"\n", Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("descripton") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_modes_and_reserved_step_names_are_refused() {
        let text = "name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"baseline\"\n";
        let err = Scenario::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("x.toml: line 4: ") && err.contains("baseline"), "{err}");
        let text = "name = \"t\"\ndescription = \"d\"\nstep = []\n";
        let err = Scenario::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("line 3: ") && err.contains("at least one"), "{err}");
        let text = "name = \"t\"\ndescription = \"d\"\nunpublished = [\n  \"m@v1\",\n  \"m\",\n]\n[[step]]\nname = \"s\"\n";
        let err = Scenario::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("line 5: ") && err.contains("module@version"), "{err}");
        let text = "name = \"t\"\ndescription = \"d\"\n[[step]]\nname = \"s\"\nchange = [{ kind = \"chmod\", file = \"a\", mode = \"rwx\" }]\n";
        assert!(Scenario::parse(text, Path::new("x.toml")).unwrap_err().to_string().contains("not octal"));
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let all = load_dir(&dir).unwrap();
        for name in ["edit-go-source", "bump-dependency", "touch-only", "no-change"] {
            assert!(all.iter().any(|s| s.name == name), "{name} is missing");
        }
    }
}
