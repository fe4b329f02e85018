//! Suite files: named groups of cells (variants × scenarios × builders × repetitions × network profiles) run together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::goproxy::server::Shaping;
use crate::results::{Builder, Probe};
use super::{Cell, NetworkProfile, RunError};
use crate::scenario::ScenarioError;
use crate::toml_lines::{self, At};

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("failed to read suite file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("suite file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Variant(#[from] RunError),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    pub description: String,
    /// The app the suite is for: a folder relative to the suite file, or `@sample` (the bundled sample); `--app` overrides it.
    #[serde(default)]
    pub app: Option<String>,
    /// The runtime probe run on every image the suite builds.
    #[serde(default)]
    pub probe: Option<Probe>,
    #[serde(default)]
    pub network: BTreeMap<String, NetworkSpec>,
    /// A build still running after this long is cancelled (`--build-timeout` overrides it).
    #[serde(default, deserialize_with = "crate::run::duration_setting")]
    pub build_timeout: Option<std::time::Duration>,
    /// `builtin` drops the templates' `# syntax=` directives in layerbench's copies (`--frontend` overrides it).
    #[serde(default)]
    pub frontend: Option<crate::results::Frontend>,
    /// The claims the suite is for (ids as in CLAIMS.md): the run prints their verdicts, and reads what cold images'
    /// Go layers hold only when one of them needs it. Every claim when absent.
    #[serde(default)]
    pub claims: Option<Vec<String>>,
    pub cells: Vec<CellGroup>,
}

impl Suite {
    /// Whether the suite is for the claim `id`.
    pub fn settles(&self, id: &str) -> bool {
        self.claims.as_ref().is_none_or(|claims| claims.iter().any(|c| c == id))
    }

    /// Whether a claim the suite is for reads what cold images' Go layers hold.
    pub fn needs_layer_contents(&self) -> bool {
        crate::analysis::verdicts::NEED_LAYER_CONTENTS.iter().any(|id| self.settles(id))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub latency_ms: u64,
    pub bandwidth_bytes_per_sec: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellGroup {
    pub variants: Vec<String>,
    pub scenarios: Vec<String>,
    #[serde(default = "buildkit_only")]
    pub builders: Vec<Builder>,
    #[serde(default = "one")]
    pub repetitions: u32,
    #[serde(default = "loopback_only")]
    pub networks: Vec<String>,
}

fn buildkit_only() -> Vec<Builder> {
    vec![Builder::Buildkit]
}
fn one() -> u32 {
    1
}
fn loopback_only() -> Vec<String> {
    vec!["loopback".to_string()]
}

/// A suite by name (a shipped suite, `scenarios/suites/<name>.toml`) or by path (ending in `.toml`).
/// Returns the suite and the file it came from.
pub fn load(name_or_path: &str) -> Result<(Suite, PathBuf), SuiteError> {
    let (path, text) = if name_or_path.ends_with(".toml") {
        let path = PathBuf::from(name_or_path);
        let text = std::fs::read_to_string(&path).map_err(|source| SuiteError::Io { path: path.clone(), source })?;
        (path, text)
    } else {
        match crate::shipped::suite_file(name_or_path) {
            Some((path, text)) => (path, text.to_string()),
            None => {
                return Err(SuiteError::Parse {
                    path: PathBuf::from(name_or_path),
                    message: format!(
                        "no shipped suite named `{name_or_path}` (shipped: {}); give a suite file's path ending in .toml",
                        crate::shipped::suite_names().join(", ")
                    ),
                })
            }
        }
    };
    let suite = parse(&text, &path)?;
    Ok((suite, path))
}

/// Parses suite text; `path` names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Suite, SuiteError> {
    let bad = |message: String| SuiteError::Parse { path: path.to_path_buf(), message: toml_lines::one_line(&message) };
    let suite: Suite = toml::from_str(text).map_err(|e| bad(toml_lines::describe(text, &e)))?;
    let at = |place: &[At], message: String| bad(format!("line {}: {message}", toml_lines::line_near(text, place)));
    for (name, spec) in &suite.network {
        if spec.bandwidth_bytes_per_sec == Some(0) {
            return Err(at(
                &[At::Key("network"), At::Key(name), At::Key("bandwidth_bytes_per_sec")],
                format!("network `{name}`: `bandwidth_bytes_per_sec` must be at least 1 (leave it out for no cap)"),
            ));
        }
    }
    for (i, id) in suite.claims.iter().flatten().enumerate() {
        if !crate::analysis::verdicts::claim_ids().any(|known| known == id) {
            let known: Vec<&str> = crate::analysis::verdicts::claim_ids().collect();
            return Err(at(&[At::Key("claims"), At::Index(i)], format!("`claims` names `{id}`, which is no claim (claims: {})", known.join(", "))));
        }
    }
    if suite.cells.is_empty() {
        return Err(at(&[At::Key("cells")], "`cells` is empty: a suite needs at least one group of cells".into()));
    }
    for (g, group) in suite.cells.iter().enumerate() {
        if group.networks.is_empty() {
            return Err(at(&[At::Key("cells"), At::Index(g), At::Key("networks")], "`networks` is empty: name `loopback` or a profile under [network]".into()));
        }
        if group.builders.is_empty() {
            return Err(at(&[At::Key("cells"), At::Index(g), At::Key("builders")], "`builders` is empty: name `buildkit`, `legacy` or both".into()));
        }
        if group.repetitions == 0 {
            return Err(at(&[At::Key("cells"), At::Index(g), At::Key("repetitions")], "`repetitions` must be at least 1".into()));
        }
        for (i, n) in group.networks.iter().enumerate() {
            if n != "loopback" && !suite.network.contains_key(n) {
                return Err(at(&[At::Key("cells"), At::Index(g), At::Key("networks"), At::Index(i)], format!("network `{n}` is not defined under [network]")));
            }
        }
    }
    Ok(suite)
}

/// The suite's cells, in file order: its variants are `app`'s `dockerfiles/*.Dockerfile`,
/// its scenarios the shipped ones (or those of `scenarios_dir`).
pub fn cells(suite: &Suite, app: &Path, scenarios_dir: Option<&Path>) -> Result<Vec<Cell>, SuiteError> {
    let mut out = Vec::new();
    for group in &suite.cells {
        let mut variants = super::variants(app, &group.variants)?;
        for v in &mut variants {
            v.probe.clone_from(&suite.probe);
        }
        let scenarios = crate::shipped::select_scenarios(scenarios_dir, &group.scenarios, true)?;
        for network in &group.networks {
            let profile = match suite.network.get(network) {
                Some(spec) => NetworkProfile {
                    name: network.clone(),
                    shaping: Shaping {
                        latency_ms: spec.latency_ms,
                        bandwidth_bytes_per_sec: spec.bandwidth_bytes_per_sec,
                    },
                },
                None => NetworkProfile::loopback(),
            };
            for mut cell in super::cells(&variants, &scenarios, &group.builders, group.repetitions) {
                cell.index = out.len();
                cell.network = profile.clone();
                out.push(cell);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_timeout_is_read_as_people_write_durations_and_a_bad_one_names_the_file_and_line() {
        let text = |timeout: &str| format!("name = \"s\"\ndescription = \"d\"\nbuild_timeout = \"{timeout}\"\n[[cells]]\nvariants = [\"naive\"]\nscenarios = [\"no-change\"]\n");
        let suite = parse(&text("1h 30m"), Path::new("s.toml")).unwrap();
        assert_eq!(suite.build_timeout, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(parse(&text("90s").replace("build_timeout = \"90s\"\n", ""), Path::new("s.toml")).unwrap().build_timeout, None);
        let err = parse(&text("soon"), Path::new("s.toml")).unwrap_err().to_string();
        assert!(err.contains("s.toml") && err.contains("line 3") && err.contains("`soon` is not a duration"), "{err}");
    }

    #[test]
    fn the_claims_suite_expands_into_cells_for_every_claim() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (suite, _) = load("claims").unwrap();
        assert_eq!(suite.app.as_deref(), Some(crate::shipped::SAMPLE_APP));
        assert_eq!(suite.probe, Some(Probe::selftest()), "the sample declares its self-test as its probe");
        let cells = cells(&suite, &root.join("sample-go-app"), None).unwrap();
        assert!(cells.iter().all(|c| c.variant.probe.is_some()));
        assert!(cells.iter().any(|c| c.network.name == "remote-10mbit" && c.network.shaping.latency_ms == 40));
        assert!(cells.iter().any(|c| c.builder == Builder::Legacy && c.variant.name == "parallel-stages"));
        assert!(cells.iter().any(|c| c.builder == Builder::Legacy && c.variant.name == "arg-then-run"));
        assert!(cells.iter().any(|c| c.network.name == "remote-10mbit" && c.variant.name == "static-scratch-naive"));
        let builds: usize = cells.iter().map(Cell::builds).sum();
        assert!(cells.iter().any(|c| c.builder == Builder::Legacy && c.variant.name == "static-scratch" && c.scenario.name == "change-build-arg"));
        assert!(cells.iter().any(|c| c.variant.name == "no-cache-mount" && c.scenario.name == "edit-go-source"));
        // The time comparisons' 5 repetitions per side make most of it.
        assert!(builds <= 100, "the claims suite stays small: {builds} builds");
        assert!(cells.iter().enumerate().all(|(i, c)| c.index == i));
    }

    #[test]
    fn a_suite_reads_layer_contents_only_when_a_claim_it_is_for_needs_them() {
        let text = |claims: &str| format!("name = \"s\"\ndescription = \"d\"\n{claims}\n[[cells]]\nvariants = [\"naive\"]\nscenarios = [\"no-change\"]\n");
        let every = parse(&text(""), Path::new("s.toml")).unwrap();
        assert!(every.settles("C7") && every.settles("X5") && every.needs_layer_contents(), "no `claims`: every claim");
        let some = parse(&text("claims = [\"C1\", \"C10\"]"), Path::new("s.toml")).unwrap();
        assert!(some.settles("C10") && !some.settles("C7") && !some.needs_layer_contents());
        assert!(parse(&text("claims = [\"C7\"]"), Path::new("s.toml")).unwrap().needs_layer_contents());
        let (quick, _) = load("quick").unwrap();
        assert!(!quick.needs_layer_contents() && quick.settles("C1"), "the quick suite leaves C7 to the claims suite");
        assert!(load("claims").unwrap().0.needs_layer_contents());
    }

    #[test]
    fn bad_suites_name_the_file_the_line_and_what_is_wrong() {
        let base = "name = \"s\"\ndescription = \"d\"\n\n[[cells]]\nvariants = [\"layered\"]\nscenarios = [\"no-change\"]\nnetworks = [\"loopback\"]\n";
        assert!(parse(base, Path::new("s.toml")).is_ok());
        for (from, to, line, needle) in [
            ("networks = [\"loopback\"]", "networks = [\"loopback\", \"moon\"]", 7, "network `moon`"),
            ("networks = [\"loopback\"]", "networks = []", 7, "`networks` is empty"),
            ("networks = [\"loopback\"]", "networks = [\"loopback\"]\nrepetitions = 0", 8, "at least 1"),
            ("networks = [\"loopback\"]", "networks = [\"loopback\"]\nbuilders = [\"kaniko\"]", 8, "kaniko"),
            ("networks = [\"loopback\"]", "networks = [\"loopback\"]\nrepetiton = 2", 8, "repetiton"),
            ("[[cells]]", "[network.slow]\nbandwidth_bytes_per_sec = 0\n[[cells]]", 5, "at least 1"),
            ("\n\n[[cells]]", "\nclaims = [\"C1\", \"C12\"]\n[[cells]]", 3, "`C12`, which is no claim"),
        ] {
            let err = parse(&base.replace(from, to), Path::new("suites/s.toml")).unwrap_err().to_string();
            assert!(err.contains("suites/s.toml") && err.contains(&format!("line {line}")) && err.contains(needle), "{to}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
