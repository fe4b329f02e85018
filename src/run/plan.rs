//! What a run builds: templates (variants), cells (variant × scenario × builder × repetition × network), and the plan that holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;


use crate::context::ContextTransfer;
use crate::dockerfile::DockerfileModel;
use crate::engine::Builder;
use crate::goproxy::layout::StoreLayout;
use crate::goproxy::server::Shaping;
use crate::miss::base_image_references;
use crate::results::{
    CacheState, Probe, TemplateRecord,
};
use crate::scenario::Scenario;

use super::*;

/// A Dockerfile template to build, with how to build and inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    /// The Dockerfile (absolute).
    pub dockerfile: PathBuf,
    /// The stage to build (`--target`); the last stage when absent.
    pub target: Option<String>,
    /// Build arguments of this template (the module proxy's GOPROXY and GOSUMDB are added to them).
    pub build_args: BTreeMap<String, String>,
    /// The runtime probe run on every image built; none when absent.
    pub probe: Option<Probe>,
    /// The binary to inspect instead of the image's entrypoint.
    pub inspect_binary: Option<String>,
}

impl Variant {
    /// A template from a Dockerfile path, named after the file (`build/service.Dockerfile` → `service`).
    pub fn from_file(dockerfile: &Path) -> Variant {
        let file = dockerfile.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let name = file
            .strip_suffix(".Dockerfile")
            .or_else(|| file.strip_suffix(".dockerfile"))
            .filter(|n| !n.is_empty())
            .unwrap_or(&file)
            .to_string();
        Variant {
            name,
            dockerfile: dockerfile.to_path_buf(),
            target: None,
            build_args: BTreeMap::new(),
            probe: None,
            inspect_binary: None,
        }
    }

    /// A `--dockerfile` argument: `PATH` or `NAME=PATH`, the path relative to `cwd` unless absolute.
    pub fn from_arg(arg: &str, cwd: &Path) -> Result<Variant, RunError> {
        let (name, path) = match arg.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains('/') => (Some(n), p),
            _ => (None, arg),
        };
        let path = cwd.join(path);
        if !path.is_file() {
            return Err(RunError::BadTemplate(format!("the Dockerfile {} (from --dockerfile {arg}) is not a file", path.display())));
        }
        let mut v = Variant::from_file(&path);
        if let Some(n) = name {
            v.name = n.to_string();
        }
        Ok(v)
    }

    /// What the results record about this template (the Dockerfile relative to the app when inside it).
    pub fn record(&self, app: &Path) -> TemplateRecord {
        TemplateRecord {
            name: self.name.clone(),
            dockerfile: self.dockerfile.strip_prefix(app).unwrap_or(&self.dockerfile).display().to_string(),
            // A Dockerfile that cannot be read fails its builds, which say why.
            dockerfile_sha256: std::fs::read(&self.dockerfile).ok().map(|bytes| crate::results::content_digest(&bytes)),
            target: self.target.clone(),
            build_args: self.build_args.clone(),
            probe: self.probe.clone(),
            inspect_binary: self.inspect_binary.clone(),
        }
    }
}

/// Refuses two templates with one name: every record is keyed by it.
pub fn check_unique(variants: &[Variant]) -> Result<(), RunError> {
    for (i, v) in variants.iter().enumerate() {
        if let Some(other) = variants[..i].iter().find(|o| o.name == v.name) {
            return Err(RunError::BadTemplate(format!(
                "two templates are named `{}` ({} and {}); name them with --dockerfile NAME=PATH",
                v.name,
                other.dockerfile.display(),
                v.dockerfile.display()
            )));
        }
    }
    Ok(())
}

/// The default variants of an app: every `dockerfiles/*.Dockerfile`, or those
/// named; an app without that folder but with a `Dockerfile` has that one.
pub fn variants(app: &Path, names: &[String]) -> Result<Vec<Variant>, RunError> {
    let dir = app.join("dockerfiles");
    let root_dockerfile = app.join("Dockerfile");
    if !dir.is_dir() && root_dockerfile.is_file() && names.is_empty() {
        return Ok(vec![Variant::from_file(&root_dockerfile)]);
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| RunError::Variants { dir: dir.clone(), source })?;
    let mut all: Vec<Variant> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".Dockerfile"))
        .map(|e| Variant::from_file(&e.path()))
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    crate::scenario::pick(all, names, |v| v.name.as_str()).map_err(|u| RunError::UnknownVariant { name: u.name, dir: dir.clone(), available: u.available })
}

/// One cell of a plan.
#[derive(Debug, Clone)]
pub struct Cell {
    pub index: usize,
    pub variant: Variant,
    pub scenario: Scenario,
    pub builder: Builder,
    pub repetition: u32,
    pub network: NetworkProfile,
}

/// The base images the cells' templates name in their `FROM`s (their ARGs expanded with each template's build
/// args), once each, in the order first named; a Dockerfile that cannot be read names none (its builds say why).
pub fn base_image_names(cells: &[Cell]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for v in cells.iter().map(|c| &c.variant).filter(|v| seen.insert(v.name.clone())) {
        let Ok(text) = std::fs::read_to_string(&v.dockerfile) else { continue };
        for image in base_image_references(&DockerfileModel::parse(&text), &v.build_args).into_values() {
            if !names.contains(&image) {
                names.push(image);
            }
        }
    }
    names
}

/// How the module proxy answers during a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkProfile {
    pub name: String,
    pub shaping: Shaping,
}

impl NetworkProfile {
    pub fn loopback() -> NetworkProfile {
        NetworkProfile {
            name: "loopback".into(),
            shaping: Shaping::default(),
        }
    }
}

impl Cell {
    pub fn label(&self) -> String {
        let network = if self.network.name == "loopback" { String::new() } else { format!(" · {}", self.network.name) };
        format!(
            "{} × {} · {} · rep {}{network}",
            self.variant.name,
            self.scenario.name,
            self.builder.name(),
            self.repetition
        )
    }

    /// Builds in this cell: the baseline plus one per step.
    pub fn builds(&self) -> usize {
        1 + self.scenario.steps.len()
    }
}


/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The app (its Go module root).
    pub app: PathBuf,
    /// The build context: the app, a folder inside it, or a folder holding it.
    pub context: PathBuf,
    pub cells: Vec<Cell>,
    pub cache_state: CacheState,
    /// Scratch workspaces go below this folder (one per cell, removed after it).
    pub work_dir: PathBuf,
    pub results_path: PathBuf,
    pub proxy_url: String,
    pub store: StoreLayout,
    /// Inspect every image built (sizes, binary linkage, the configured probe).
    pub inspect: bool,
    /// Also read what each template's first cold image's Go layers hold (exports the image: seconds for a large
    /// one); only a run that settles a claim needing it does.
    pub layer_contents: bool,
    /// A build still running after this long is cancelled and recorded as `timed-out`.
    pub build_timeout: Duration,
    /// How long to wait for an engine that stopped answering before stopping the run.
    pub engine_wait: Duration,
    /// How the cells meet the engines: shared out, or every cell on every engine.
    pub spread: Spread,
    /// How BuildKit builds get their context.
    pub context_transfer: ContextTransfer,
    /// `builtin`: the workspaces' Dockerfiles drop their `# syntax=` directive.
    pub frontend: crate::results::Frontend,
}

/// How a run's cells meet its engines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Spread {
    /// Each engine takes the next cell no engine has taken: every cell is built once.
    #[default]
    Shared,
    /// `--matrix`: every engine builds every cell, in plan order, except the (cell index, engine name) pairs in
    /// `done` (those a resumed file finished).
    Matrix { done: BTreeSet<(usize, String)> },
}

impl Spread {
    /// The cells `engine` builds, in plan order: every cell for a matrix run (but those it finished); for a shared
    /// run, `None`: the engines take cells from one queue.
    pub(super) fn cells_of<'c>(&self, cells: &'c [Cell], engine: &str) -> Option<Vec<&'c Cell>> {
        match self {
            Spread::Shared => None,
            Spread::Matrix { done } => Some(cells.iter().filter(|c| !done.contains(&(c.index, engine.to_string()))).collect()),
        }
    }
}

/// How long a build may run before it is cancelled, unless the command line, suite or project file says otherwise.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A duration setting of a suite or project file, written as people do (`90s`, `30m`, `1h 30m`).
pub fn duration_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write for example \"90s\" or \"30m\"")))
}

/// Every cell: each variant × scenario × builder × repetition, in that nesting order.
pub fn cells(variants: &[Variant], scenarios: &[Scenario], builders: &[Builder], repetitions: u32) -> Vec<Cell> {
    let mut cells = Vec::new();
    for variant in variants {
        for scenario in scenarios {
            for &builder in builders {
                for repetition in 1..=repetitions {
                    cells.push(Cell {
                        index: cells.len(),
                        variant: variant.clone(),
                        scenario: scenario.clone(),
                        builder,
                        repetition,
                        network: NetworkProfile::loopback(),
                    });
                }
            }
        }
    }
    cells
}

impl Plan {
    /// The builds of the plan's cells, once each.
    pub fn total_builds(&self) -> usize {
        self.cells.iter().map(Cell::builds).sum()
    }

    /// The builds a run on these engines makes: the cells once (shared out), or each engine's cells (a matrix).
    pub fn builds_on(&self, engines: &[RunEngine]) -> usize {
        match &self.spread {
            Spread::Shared => self.total_builds(),
            spread => engines.iter().filter_map(|e| spread.cells_of(&self.cells, &e.name)).flatten().map(|c| c.builds()).sum(),
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_with_a_root_dockerfile_and_no_dockerfiles_folder_has_that_template() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("Dockerfile"), "FROM x\n").unwrap();
        let v = variants(app.path(), &[]).unwrap();
        assert_eq!((v.len(), v[0].name.as_str()), (1, "Dockerfile"));
        let empty = tempfile::tempdir().unwrap();
        assert!(variants(empty.path(), &[]).unwrap_err().to_string().contains("--dockerfile"));
    }

}
