//! The project file (`layerbench.toml`): an app, its Dockerfile templates and what `layerbench check` expects of them, read and checked before any build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::analysis::expect::{Expectation, StepPattern, TemplateExpectations, TemplateIdentity};
use crate::dockerfile::DockerfileModel;
use crate::results::{Builder, Probe};
use crate::run::{Cell, NetworkProfile, Variant};
use crate::scenario::Scenario;
use crate::toml_lines::{self, At};

/// The project file `check` reads when `--config` is not given.
pub const PROJECT_FILE: &str = "layerbench.toml";
/// The name of the scenario of a template whose expectations name none and whose project lists none: its baseline build only.
pub const BASELINE_ONLY: &str = "baseline-only";

/// A project file that cannot be used: it names the file and, where it can, the line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ProjectError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    #[serde(default = "current_folder")]
    app: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    scenarios: Vec<String>,
    /// Absent: as many as the project's time expectations need to reach 95% (see [`needed_repetitions`]).
    #[serde(default)]
    repetitions: Option<u32>,
    #[serde(default = "buildkit_only")]
    builders: Vec<Builder>,
    #[serde(default, deserialize_with = "crate::run::duration_setting")]
    build_timeout: Option<std::time::Duration>,
    #[serde(default)]
    frontend: Option<crate::results::Frontend>,
    #[serde(default, rename = "template")]
    templates: Vec<TemplateFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    name: String,
    dockerfile: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    #[serde(default)]
    probe: Option<Probe>,
    #[serde(default)]
    inspect_binary: Option<String>,
    #[serde(default, rename = "expect")]
    expectations: Vec<Expectation>,
}

fn current_folder() -> String {
    ".".to_string()
}
/// The fewest repetitions at which every time expectation of `templates` can be settled: the rank test's 4 per side
/// for `max_slowdown`, the one-sample interval's 6 for `max_rebuild_seconds` (1 when there is none).
fn needed_repetitions(templates: &[TemplateFile]) -> u32 {
    let expectations = templates.iter().flat_map(|t| &t.expectations);
    let needed = expectations
        .map(|e| match (e.max_rebuild_seconds, e.max_slowdown) {
            (Some(_), _) => crate::analysis::ranks::one_sample_repetitions_needed(),
            (None, Some(_)) => crate::analysis::ranks::repetitions_needed(),
            (None, None) => 1,
        })
        .max()
        .unwrap_or(1);
    u32::try_from(needed).unwrap_or(u32::MAX)
}
fn buildkit_only() -> Vec<Builder> {
    vec![Builder::Buildkit]
}

/// A project file, read, resolved against its folder and checked.
#[derive(Debug, Clone)]
pub struct Project {
    pub path: PathBuf,
    /// The app: a folder (absolute), or `@sample`.
    pub app: String,
    /// The build context (absolute), when not the app.
    pub context: Option<PathBuf>,
    pub repetitions: u32,
    pub builders: Vec<Builder>,
    /// A build still running after this long is cancelled (`--build-timeout` overrides it).
    pub build_timeout: Option<std::time::Duration>,
    /// `builtin` drops the templates' `# syntax=` directives in layerbench's copies (`--frontend` overrides it).
    pub frontend: Option<crate::results::Frontend>,
    pub templates: Vec<Template>,
    /// Every scenario the project or an expectation names, by name.
    pub scenarios: BTreeMap<String, Scenario>,
    /// The project's `scenarios`, by name: the builds expectations without a scenario hold after.
    pub every_build_scenarios: Vec<String>,
}

/// One `[[template]]`.
#[derive(Debug, Clone)]
pub struct Template {
    pub variant: Variant,
    /// The Dockerfile as the project file names it, relative to the current folder when inside it (for messages and annotations).
    pub dockerfile_shown: String,
    /// The Dockerfile's content digest when the project was read: what its builds in a results file must match.
    pub dockerfile_sha256: String,
    pub model: DockerfileModel,
    pub expectations: Vec<Expectation>,
}

impl Project {
    /// Reads and checks `path`: unknown keys, missing files, step patterns that match no step, scenarios and steps that do not exist.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProjectError { path: path.to_path_buf(), message: format!("failed to read the project file: {e}") })?;
        Project::parse(&text, path)
    }

    /// Parses and checks project text; relative paths are resolved from `path`'s folder. Every error names the file and the line.
    pub fn parse(text: &str, path: &Path) -> Result<Project, ProjectError> {
        let bad = |message: String| ProjectError { path: path.to_path_buf(), message: toml_lines::one_line(&message) };
        let at = |place: &[At], message: String| bad(format!("line {}: {message}", toml_lines::line_near(text, place)));
        let file: ProjectFile = toml::from_str(text).map_err(|e| bad(toml_lines::describe(text, &e)))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).map_err(|e| bad(format!("failed to resolve the folder of the project file: {e}")))?;
        let resolve = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { dir.join(p) };
        if file.templates.is_empty() {
            return Err(at(&[At::Key("template")], "no `[[template]]`: name at least one Dockerfile template to check".into()));
        }
        if file.builders.is_empty() {
            return Err(at(&[At::Key("builders")], "`builders` is empty: name `buildkit`, `legacy` or both".into()));
        }
        if file.repetitions == Some(0) {
            return Err(at(&[At::Key("repetitions")], "`repetitions` must be at least 1".into()));
        }
        let app = if file.app == crate::shipped::SAMPLE_APP {
            file.app.clone()
        } else {
            let p = resolve(&file.app);
            if !p.is_dir() {
                return Err(at(&[At::Key("app")], format!("`app = {:?}` is not a folder ({})", file.app, p.display())));
            }
            p.display().to_string()
        };
        let context = match &file.context {
            Some(c) => {
                let p = resolve(c);
                if !p.is_dir() {
                    return Err(at(&[At::Key("context")], format!("`context = {c:?}` is not a folder ({})", p.display())));
                }
                if let Some(problem) = context_problem(&app, &p) {
                    return Err(at(&[At::Key("context")], format!("`context = {c:?}` {problem}")));
                }
                Some(p)
            }
            None => None,
        };

        let mut scenarios: BTreeMap<String, Scenario> = BTreeMap::new();
        // A scenario by name or file: its name and its steps' names.
        let mut load_scenario = |name: &str, place: &[At]| -> Result<(String, Vec<String>), ProjectError> {
            let wanted = if name.ends_with(".toml") { resolve(name).display().to_string() } else { name.to_string() };
            let found = crate::shipped::select_scenarios(None, &[wanted], true).map_err(|e| at(place, e.to_string()))?;
            let scenario = found.into_iter().next().ok_or_else(|| at(place, format!("no scenario `{name}`")))?;
            let key = scenario.name.clone();
            let steps = scenario.steps.iter().map(|st| st.name.clone()).collect();
            scenarios.insert(key.clone(), scenario);
            Ok((key, steps))
        };
        let mut every_build_scenarios = Vec::new();
        for (i, s) in file.scenarios.iter().enumerate() {
            every_build_scenarios.push(load_scenario(s, &[At::Key("scenarios"), At::Index(i)])?.0);
        }

        let cwd = std::env::current_dir().unwrap_or_default();
        let mut templates: Vec<Template> = Vec::new();
        for (ti, t) in file.templates.iter().enumerate() {
            let template_at = |key: &'static str| [At::Key("template"), At::Index(ti), At::Key(key)];
            if templates.iter().any(|o| o.variant.name == t.name) {
                return Err(at(&template_at("name"), format!("two templates are named `{}`", t.name)));
            }
            let dockerfile = resolve(&t.dockerfile);
            let dockerfile_text = std::fs::read_to_string(&dockerfile)
                .map_err(|e| at(&template_at("dockerfile"), format!("template `{}`: failed to read its Dockerfile {}: {e}", t.name, dockerfile.display())))?;
            let model = DockerfileModel::parse(&dockerfile_text);
            let mut expectations = Vec::new();
            for (i, e) in t.expectations.iter().enumerate() {
                let expect_at = |key: &'static str| [At::Key("template"), At::Index(ti), At::Key("expect"), At::Index(i), At::Key(key)];
                let which = format!("template `{}`, expectation {}", t.name, i + 1);
                let mut e = e.clone();
                if e.is_empty() {
                    return Err(at(&expect_at("scenario"), format!("{which} checks nothing: give it `cached`, `executed`, `all_cached`, `max_proxy_requests`, `max_image_size`, `max_layers`, `binary`, `user`, `probe`, `max_rebuild_seconds` or `max_slowdown`")));
                }
                if let Some(s) = &e.scenario {
                    let (name, steps) = load_scenario(s, &expect_at("scenario"))?;
                    if let Some(step) = &e.step {
                        if step != "baseline" && !steps.contains(step) {
                            return Err(at(&expect_at("step"), format!("{which}: scenario `{name}` has no step `{step}` (its steps: baseline, {})", steps.join(", "))));
                        }
                    }
                    e.scenario = Some(name);
                } else if e.step.is_some() {
                    return Err(at(&expect_at("step"), format!("{which}: `step` needs a `scenario`")));
                }
                for (key, patterns) in [("cached", &e.cached), ("executed", &e.executed)] {
                    for (k, pattern) in patterns.iter().enumerate() {
                        let pattern_at = [At::Key("template"), At::Index(ti), At::Key("expect"), At::Index(i), At::Key(key), At::Index(k)];
                        let p = StepPattern::parse(pattern).map_err(|m| at(&pattern_at, format!("{which}: {key}: {m}")))?;
                        if !model.instructions.iter().filter(|i| !i.text.starts_with("FROM ")).any(|i| p.matches_instruction(i)) {
                            return Err(at(
                                &pattern_at,
                                format!(
                                    "{which}: `{key} = {pattern:?}` matches no step of {} (a pattern is an instruction's beginning, a glob with * and ?, or line:N; its steps: {})",
                                    dockerfile.display(),
                                    model.instructions.iter().filter(|i| i.keyword != "FROM").map(|i| format!("line {} `{}`", i.line, i.text)).collect::<Vec<_>>().join(", ")
                                ),
                            ));
                        }
                    }
                }
                if e.probe.is_some() && t.probe.is_none() {
                    return Err(at(&expect_at("probe"), format!("{which}: `probe = …` needs the template's `probe = {{ command = [...] }}`")));
                }
                for (key, v) in [("max_rebuild_seconds", e.max_rebuild_seconds), ("max_slowdown", e.max_slowdown)] {
                    if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                        return Err(at(&expect_at(key), format!("{which}: `{key}` must be a positive number")));
                    }
                }
                expectations.push(e);
            }
            templates.push(Template {
                variant: Variant {
                    name: t.name.clone(),
                    dockerfile: dockerfile.clone(),
                    target: t.target.clone(),
                    build_args: t.build_args.clone(),
                    probe: t.probe.clone(),
                    inspect_binary: t.inspect_binary.clone(),
                },
                dockerfile_shown: dockerfile.strip_prefix(&cwd).unwrap_or(&dockerfile).display().to_string(),
                dockerfile_sha256: crate::results::content_digest(dockerfile_text.as_bytes()),
                model,
                expectations,
            });
        }
        Ok(Project {
            path: path.to_path_buf(),
            app,
            context,
            repetitions: file.repetitions.unwrap_or_else(|| needed_repetitions(&file.templates)),
            build_timeout: file.build_timeout,
            frontend: file.frontend,
            builders: file.builders,
            templates,
            scenarios,
            every_build_scenarios,
        })
    }

    /// Exactly the cells the expectations need: per template, each scenario an
    /// expectation names (and the project's `scenarios` for expectations that
    /// hold after every build) × the builders they cover; repeated
    /// `repetitions` times only where a time expectation judges them.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for t in &self.templates {
            // (scenario, builder) → repetitions, in first-needed order.
            let mut needed: Vec<(String, Builder, u32)> = Vec::new();
            let mut need = |scenario: &str, builder: Builder, reps: u32| match needed.iter_mut().find(|(s, b, _)| s == scenario && *b == builder) {
                Some(entry) => entry.2 = entry.2.max(reps),
                None => needed.push((scenario.to_string(), builder, reps)),
            };
            for e in &t.expectations {
                let reps = if e.needs_repetitions() { self.repetitions } else { 1 };
                let builders = e.builder.map_or_else(|| self.builders.clone(), |b| vec![b]);
                let scenarios: Vec<String> = match &e.scenario {
                    Some(s) => vec![s.clone()],
                    None if self.every_build_scenarios.is_empty() => vec![BASELINE_ONLY.to_string()],
                    None => self.every_build_scenarios.clone(),
                };
                for s in &scenarios {
                    for &b in &builders {
                        need(s, b, reps);
                    }
                }
            }
            for (scenario, builder, reps) in needed {
                let scenario = self.scenarios.get(&scenario).cloned().unwrap_or_else(baseline_only);
                for repetition in 1..=reps {
                    cells.push(Cell {
                        index: cells.len(),
                        variant: t.variant.clone(),
                        scenario: scenario.clone(),
                        builder,
                        repetition,
                        network: NetworkProfile::loopback(),
                    });
                }
            }
        }
        cells
    }

    /// What judging needs of each template.
    pub fn expectations(&self) -> Vec<TemplateExpectations> {
        self.templates
            .iter()
            .map(|t| TemplateExpectations {
                name: t.variant.name.clone(),
                dockerfile: t.dockerfile_shown.clone(),
                model: t.model.clone(),
                expectations: t.expectations.clone(),
                scenario_steps: self.scenarios.iter().map(|(n, s)| (n.clone(), s.steps.iter().map(|st| st.name.clone()).collect())).collect(),
                builders: self.builders.clone(),
                every_build_scenarios: self.every_build_scenarios.clone(),
                identity: TemplateIdentity {
                    dockerfile_sha256: t.dockerfile_sha256.clone(),
                    target: t.variant.target.clone(),
                    build_args: t.variant.build_args.clone(),
                },
            })
            .collect()
    }
}

/// The scenario of a template checked only after its baseline build.
fn baseline_only() -> Scenario {
    Scenario {
        name: BASELINE_ONLY.to_string(),
        description: "the baseline build only".to_string(),
        sample_only: false,
        unpublished: Vec::new(),
        steps: Vec::new(),
    }
}

/// Why the build context cannot be used with the app, if it cannot: the two must be the same folder or one
/// inside the other, their symlinks followed (a context that reaches outside the app must hold the whole app).
fn context_problem(app: &str, context: &Path) -> Option<String> {
    if app == crate::shipped::SAMPLE_APP {
        return None;
    }
    let real = |p: &Path| std::fs::canonicalize(p).ok();
    match (real(Path::new(app)), real(context)) {
        (Some(app), Some(context)) if app.starts_with(&context) || context.starts_with(&app) => None,
        (Some(app), Some(context)) => Some(format!(
            "is {}, which neither holds the app {} nor lies inside it (through its symlinks)",
            context.display(),
            app.display()
        )),
        _ => Some("cannot be resolved".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = "FROM golang:1.23 AS build\nARG GOPROXY\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /out/app .\nFROM scratch\nCOPY --from=build /out/app /app\nUSER 65532\nENTRYPOINT [\"/app\"]\n";

    /// A folder with an app and a Dockerfile, and the project file's path in it.
    fn project_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("build")).unwrap();
        std::fs::write(dir.path().join("build/service.Dockerfile"), DOCKERFILE).unwrap();
        std::fs::write(dir.path().join("go.mod"), "module example.com/app\n").unwrap();
        let path = dir.path().join(PROJECT_FILE);
        (dir, path)
    }

    const GOOD: &str = r#"app = "."
scenarios = ["edit-go-source", "touch-only"]
repetitions = 3
builders = ["buildkit"]

[[template]]
name = "service"
dockerfile = "build/service.Dockerfile"
probe = { command = ["selftest"] }

[[template.expect]]
max_image_size = "30MB"
binary = "static"
user = "non-root"
probe = true

[[template.expect]]
scenario = "edit-go-source"
cached = ["RUN go mod download"]
executed = ["COPY . .", "line:7"]
max_proxy_requests = 0
max_slowdown = 1.15
"#;

    #[test]
    fn a_project_file_is_read_with_paths_resolved_from_its_folder() {
        let (dir, path) = project_dir();
        let p = Project::parse(GOOD, &path).unwrap();
        assert_eq!(p.templates.len(), 1);
        assert_eq!(p.templates[0].variant.dockerfile, std::fs::canonicalize(dir.path()).unwrap().join("build/service.Dockerfile"));
        assert_eq!(p.templates[0].expectations[0].max_image_size.map(|s| s.0), Some(30_000_000));
        assert_eq!(p.every_build_scenarios, ["edit-go-source", "touch-only"]);
    }

    #[test]
    fn only_the_cells_the_expectations_need_are_built_and_only_time_expectations_repeat() {
        let (_dir, path) = project_dir();
        let p = Project::parse(GOOD, &path).unwrap();
        let cells: Vec<(String, u32)> = p.cells().iter().map(|c| (c.scenario.name.clone(), c.repetition)).collect();
        // edit-go-source has a time expectation (3 repetitions); touch-only only the image checks (once).
        assert_eq!(cells, [("edit-go-source".to_string(), 1), ("edit-go-source".into(), 2), ("edit-go-source".into(), 3), ("touch-only".into(), 1)]);
        let only_image = GOOD.replace("scenarios = [\"edit-go-source\", \"touch-only\"]", "").split("[[template.expect]]\nscenario").next().unwrap().to_string();
        let p = Project::parse(&only_image, &path).unwrap();
        let names: Vec<String> = p.cells().iter().map(|c| c.scenario.name.clone()).collect();
        assert_eq!(names, [BASELINE_ONLY]);
        assert!(p.cells()[0].scenario.steps.is_empty());
    }

    #[test]
    fn without_repetitions_time_expectations_get_as_many_as_settle_them() {
        let (_dir, path) = project_dir();
        let unset = GOOD.replace("repetitions = 3\n", "");
        assert_eq!(Project::parse(&unset, &path).unwrap().repetitions, 4, "max_slowdown: 4 per side");
        let rebuild = unset.replace("max_slowdown = 1.15", "max_slowdown = 1.15\nmax_rebuild_seconds = 30");
        assert_eq!(Project::parse(&rebuild, &path).unwrap().repetitions, 6, "max_rebuild_seconds: 6");
        assert_eq!(Project::parse(&unset.replace("max_slowdown = 1.15\n", ""), &path).unwrap().repetitions, 1);
        assert_eq!(Project::parse(GOOD, &path).unwrap().repetitions, 3, "a set value is kept");
    }

    #[test]
    fn unknown_keys_name_the_file_the_line_and_the_key() {
        let (_dir, path) = project_dir();
        let text = GOOD.replace("max_proxy_requests = 0", "max_proxy_request = 0");
        let e = Project::parse(&text, &path).unwrap_err().to_string();
        assert!(e.contains(PROJECT_FILE) && e.contains("line 21") && e.contains("max_proxy_request"), "{e}");
        let text = GOOD.replace("repetitions = 3", "repetitons = 3");
        let e = Project::parse(&text, &path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("repetitons"), "{e}");
    }

    #[test]
    fn a_step_pattern_that_matches_no_step_is_an_error_not_a_pass() {
        let (_dir, path) = project_dir();
        for typo in ["RUN go mod dowload", "line:99", "COPY *.txt *"] {
            let text = GOOD.replace("\"RUN go mod download\"", &format!("{typo:?}"));
            let e = Project::parse(&text, &path).unwrap_err().to_string();
            assert!(e.contains("matches no step") && e.contains("line 19"), "{typo}: {e}");
        }
        let glob = GOOD.replace("\"RUN go mod download\"", "\"RUN go mod *\"");
        assert!(Project::parse(&glob, &path).is_ok());
    }

    #[test]
    fn bad_values_are_errors_that_say_what_is_allowed() {
        let (_dir, path) = project_dir();
        let cases = [
            ("binary = \"static\"", "binary = \"statik\"", "statik"),
            ("max_image_size = \"30MB\"", "max_image_size = \"30 furlongs\"", "unknown unit"),
            ("scenario = \"edit-go-source\"", "scenario = \"edit-go-sorce\"", "edit-go-sorce"),
            ("scenario = \"edit-go-source\"", "scenario = \"edit-go-source\"\nstep = \"nope\"", "no step `nope`"),
            ("dockerfile = \"build/service.Dockerfile\"", "dockerfile = \"build/missing.Dockerfile\"", "missing.Dockerfile"),
            ("probe = { command = [\"selftest\"] }", "", "needs the template's `probe"),
            ("builders = [\"buildkit\"]", "builders = [\"kaniko\"]", "kaniko"),
        ];
        for (from, to, needle) in cases {
            let e = Project::parse(&GOOD.replace(from, to), &path).unwrap_err().to_string();
            assert!(e.contains(needle), "{to}: {e}");
        }
    }

    #[test]
    fn a_context_that_leaves_the_app_is_refused_with_the_line_even_through_a_symlinked_folder() {
        let (dir, path) = project_dir();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("linked")).unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let with_context = |c: &str| GOOD.replace("app = \".\"", &format!("app = \".\"\ncontext = {c:?}"));
        let sibling = format!("../{}", elsewhere.path().file_name().unwrap().to_str().unwrap());
        for context in [sibling.as_str(), "linked", elsewhere.path().to_str().unwrap()] {
            let e = Project::parse(&with_context(context), &path).unwrap_err().to_string();
            assert!(e.contains(PROJECT_FILE) && e.contains("line 2: ") && e.contains("neither holds the app"), "{context}: {e}");
        }
        for context in [".", "sub"] {
            assert!(Project::parse(&with_context(context), &path).is_ok(), "{context}");
        }
        let app_below = GOOD.replace("app = \".\"", "app = \"sub\"\ncontext = \".\"");
        assert!(Project::parse(&app_below, &path).is_ok(), "a context holding the app is fine");
    }

    #[test]
    fn every_semantic_error_names_its_line() {
        let (_dir, path) = project_dir();
        for (from, to, line) in [
            ("repetitions = 3", "repetitions = 0", 3),
            ("builders = [\"buildkit\"]", "builders = []", 4),
            ("max_slowdown = 1.15", "max_slowdown = -1.0", 22),
            ("scenario = \"edit-go-source\"", "step = \"x\"", 18),
            ("scenarios = [\"edit-go-source\", \"touch-only\"]", "scenarios = [\"edit-go-source\",\n  \"nope\"]", 3),
            ("probe = { command = [\"selftest\"] }", "", 15),
        ] {
            let e = Project::parse(&GOOD.replace(from, to), &path).unwrap_err().to_string();
            assert!(e.contains(&format!("line {line}: ")), "{to}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
