//! Runs the cells of a plan (variant × scenario × builder × repetition): a scratch workspace per cell, a baseline build, then one build per scenario step; emits events and writes results after every build.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::context::{ContextTransfer, IgnoreDialect};
use crate::dockerfile::{split_buildkit_name, split_legacy_step, DockerfileModel};
use crate::engine::{BuildRequest, Builder, ContextSource, Engine, EngineError, StepReport, KIND_LABEL};
use crate::gomod::modfile::{first_direct_requirement, requirements};
use crate::goproxy::layout::StoreLayout;
use crate::gomod::{next_version, ModuleVersions};
use crate::goproxy::{ModuleSource, Prefetched};
use crate::roles::FIRST_DIRECT_DEPENDENCY;
use crate::scenario::{Change, NEXT_VERSION};
use crate::goproxy::server::{ProxyLog, ProxyRequest, ProxyServer, RequestKind, Shaping, ShapingControl, Unpublished};
use crate::goproxy::store::StoreReport;
use crate::inspect::{inspect_image, InspectOptions, Inspection};
use crate::miss::{base_image_references, explain, BaseImageRef, BuildInputs};
use crate::results::{
    BuildRecord, BuildStart, CacheState, EngineUse, ImageRecord, Isolation, LayerRecord, Outcome, Overhead, Probe, ProxyRecord, Results, ResultsError, RunOptions,
    ServedRequest, StoreProvenance, TemplateRecord, SCHEMA_VERSION,
};
use crate::setup::Provisioned;
use crate::scenario::{Scenario, Step};
use crate::workspace::{Applied, Layout, Workspace, WorkspaceError};

/// How the context names a Dockerfile the Docker CLI would hide from COPY (see `context`).
const HIDDEN_DOCKERFILE_PREFIX: &str = ".dockerfile.";

/// Label carrying the run id on every image a run builds.
pub use crate::engine::RUN_LABEL;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no variant named `{name}`: {dir} has {available}")]
    UnknownVariant { name: String, dir: PathBuf, available: String },
    #[error("failed to list the variants in {dir}: {source} (give templates with --dockerfile PATH)")]
    Variants { dir: PathBuf, source: std::io::Error },
    #[error("{0}")]
    BadTemplate(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("failed to prepare the scratch workspace for {cell}: {source}")]
    Workspace { cell: String, source: Box<WorkspaceError> },
    #[error("interrupted; the partial results (every build finished so far) are in {0}; `layerbench report` on that file reports them, and `layerbench run` with the same options and `--resume {0}` runs the cells it lacks")]
    Interrupted(PathBuf),
    #[error("the Docker engine stopped answering and was not back after {}; every build finished before is in {path}; once the engine runs again, `layerbench run` with the same options and `--resume {path}` runs only the cells that file lacks", humantime::format_duration(*waited))]
    EngineLost { path: PathBuf, waited: Duration },
    #[error("{path} cannot be resumed by this run: {problem}")]
    NotResumable { path: PathBuf, problem: String },
    #[error("{0}")]
    Matrix(String),
}

/// How a build's error begins when the engine stopped answering during it.
pub const ENGINE_LOST: &str = "engine connection lost";

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

/// The running proxy's handles the runner uses: one lane of it (see [`ProxyServer::lane`]).
#[derive(Debug, Clone)]
pub struct ProxyHandles {
    /// The store and upstream the proxy answers from (dependency bumps read versions through it).
    pub source: ModuleSource,
    pub log: ProxyLog,
    pub unpublished: Unpublished,
    pub shaping: ShapingControl,
    /// The lane's name (empty: the plain URL) and the GOPROXY value its builds get.
    pub lane: String,
    pub url: String,
}

impl ProxyHandles {
    /// The plain URL: what a run on one engine uses.
    pub fn of(proxy: &ProxyServer) -> ProxyHandles {
        ProxyHandles::of_lane(proxy, "")
    }

    /// A lane of its own, for one engine of a run over several (its builds' requests are told from the others').
    pub fn of_lane(proxy: &ProxyServer, lane: &str) -> ProxyHandles {
        let controls = proxy.lane(lane);
        ProxyHandles {
            source: proxy.source(),
            log: proxy.log(),
            unpublished: controls.unpublished,
            shaping: controls.shaping,
            lane: lane.to_string(),
            url: proxy.lane_url(lane),
        }
    }
}

/// An engine a run builds on, with its own lane of the proxy.
#[derive(Debug, Clone)]
pub struct RunEngine {
    /// What its records name it by.
    pub name: String,
    pub engine: Engine,
    /// `Private` for an engine layerbench owns: it is emptied before every cell.
    pub isolation: Isolation,
    pub proxy: ProxyHandles,
}

impl RunEngine {
    /// What the results record about it.
    pub fn record(&self) -> EngineUse {
        EngineUse {
            name: self.name.clone(),
            target: self.engine.target().to_string(),
            version: self.engine.version.clone(),
            isolation: self.isolation,
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
    fn cells_of<'c>(&self, cells: &'c [Cell], engine: &str) -> Option<Vec<&'c Cell>> {
        match self {
            Spread::Shared => None,
            Spread::Matrix { done } => Some(cells.iter().filter(|c| !done.contains(&(c.index, engine.to_string()))).collect()),
        }
    }
}

/// Refuses a matrix that cannot be one: fewer than two engines (one engine builds every cell anyway), or a shard
/// (a shard's cells are meant for one CI job's engine; run the matrix in each job instead of splitting it).
pub fn check_matrix(engines: usize, shard: Option<crate::results::Shard>) -> Result<(), RunError> {
    if engines < 2 {
        return Err(RunError::Matrix(format!(
            "--matrix builds every cell on every engine, and it was given {engines} (name two or more with --engine NAME|URL; one engine builds every cell without it)"
        )));
    }
    if let Some(shard) = shard {
        return Err(RunError::Matrix(format!("--matrix cannot be combined with --shard {shard}: a matrix builds every cell on every engine of one job (give each CI job its engines and --matrix, without --shard)")));
    }
    Ok(())
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

/// A results file for `plan`, with the provenance of this machine and run, and no records yet.
/// `all_cells` are the run's every cell (those of other shards too): the options name them all.
pub fn new_results(run_id: &str, provisioned: &Provisioned, store: &Path, plan: &Plan, all_cells: &[Cell]) -> Results {
    let repetitions = all_cells.iter().map(|c| c.repetition).max().unwrap_or(1);
    let report = StoreReport::read(store);
    let unique = |names: Vec<String>| {
        let mut seen = Vec::new();
        for n in names {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen
    };
    Results {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: crate::shipped::git_commit(),
        started_unix_ms: crate::results::unix_ms_now(),
        engine: provisioned.engine.clone(),
        machine: Some(provisioned.machine.clone()),
        base_images: provisioned.base_images.clone(),
        store: StoreProvenance {
            path: store.display().to_string(),
            recipe_fingerprint: report.as_ref().map(|r| r.recipe_fingerprint.clone()).unwrap_or_default(),
            mirror: report.as_ref().map(|r| r.mirror.clone()).unwrap_or_default(),
            modules: provisioned.store.modules,
            versions: provisioned.store.versions,
        },
        app: plan.app.display().to_string(),
        options: RunOptions {
            variants: unique(all_cells.iter().map(|c| c.variant.name.clone()).collect()),
            scenarios: unique(all_cells.iter().map(|c| c.scenario.name.clone()).collect()),
            repetitions,
            builders: {
                let mut b: Vec<Builder> = Vec::new();
                for c in all_cells {
                    if !b.contains(&c.builder) {
                        b.push(c.builder);
                    }
                }
                b
            },
            cache_state: plan.cache_state,
            proxy_url: plan.proxy_url.clone(),
            suite: None,
            context_transfer: Some(plan.context_transfer),
            frontend: plan.frontend,
            templates: {
                let mut t: Vec<TemplateRecord> = Vec::new();
                for c in all_cells {
                    if !t.iter().any(|x| x.name == c.variant.name) {
                        t.push(c.variant.record(&plan.app));
                    }
                }
                t
            },
            context: plan.context.strip_prefix(&plan.app).map_or_else(|_| plan.context.display().to_string(), |p| p.display().to_string()),
            upstream: None,
            matrix: matches!(plan.spread, Spread::Matrix { .. }),
        },
        complete: false,
        engines: Vec::new(),
        shard: None,
        overhead: None,
        records: Vec::new(),
    }
}

/// What the runner tells its reporter.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// `engine` names the engine the cell runs on (several engines run cells at once; their events interleave).
    CellStarted { engine: &'a str, cell: &'a Cell, of: usize },
    BuildStarted { engine: &'a str, cell: &'a Cell, step: &'a str, build: usize, of: usize },
    StepFinished { step: &'a StepReport },
    BuildFinished { record: &'a BuildRecord },
    /// Something went wrong that does not stop the run (a cleanup the engine refused).
    Warning { message: String },
}

/// What one engine's builds share: the engine, the plan, its proxy lane, and the time it spent outside builds.
pub struct RunContext<'a> {
    pub slot: &'a RunEngine,
    pub engine: &'a Engine,
    pub plan: &'a Plan,
    pub proxy: &'a ProxyHandles,
    pub interrupt: watch::Receiver<bool>,
    /// Set when a build failed and the engine no longer answered.
    pub engine_lost: bool,
    /// The time spent in builds and outside them since the last cell was accounted.
    spent: Overhead,
}

/// Progress through the run's builds, for events.
struct Counter {
    done: usize,
    total: usize,
}

/// What the engines' workers share (they run as futures of one task, so nothing is borrowed across an await):
/// the results, the reporter, the build counter and the cells not yet taken: one queue all engines take from, or,
/// in a matrix, one per engine (by the engine's position).
struct Sink<'r, 'e> {
    results: RefCell<&'r mut Results>,
    on_event: RefCell<&'e mut dyn FnMut(Event<'_>)>,
    counter: RefCell<Counter>,
    queues: Vec<RefCell<VecDeque<&'r Cell>>>,
    path: &'r Path,
}

impl Sink<'_, '_> {
    fn event(&self, event: Event<'_>) {
        (self.on_event.borrow_mut())(event);
    }

    /// The next cell for the engine at `position`: from its own queue in a matrix, else from the one shared queue.
    fn next_cell(&self, position: usize) -> Option<&Cell> {
        let queue = self.queues.get(position).or_else(|| self.queues.first())?;
        queue.borrow_mut().pop_front()
    }

    /// The cells no engine has built yet.
    fn left(&self) -> usize {
        self.queues.iter().map(|q| q.borrow().len()).sum()
    }

    /// Counts a build as started and tells the reporter.
    fn build_started(&self, engine: &str, cell: &Cell, step: &str) {
        let (build, of) = {
            let mut counter = self.counter.borrow_mut();
            counter.done += 1;
            (counter.done, counter.total)
        };
        self.event(Event::BuildStarted { engine, cell, step, build, of });
    }

    /// Counts builds a cell will not make (it ended early).
    fn skip(&self, builds: usize) {
        self.counter.borrow_mut().done += builds;
    }

    /// Records a build (stamped with its cell and engine), writes the results file and tells the reporter.
    fn push(&self, slot: &RunEngine, cell: &Cell, mut record: BuildRecord) -> Result<(), RunError> {
        record.cell = Some(cell.index);
        record.engine.clone_from(&slot.name);
        record.isolation = slot.isolation;
        record.engine_version = Some(slot.engine.version.clone());
        let mut results = self.results.borrow_mut();
        results.records.push(record);
        results.write(self.path)?;
        if let Some(last) = results.records.last() {
            self.event(Event::BuildFinished { record: last });
        }
        Ok(())
    }

    /// Adds a cell's time to the run's and writes nothing (the next record's write carries it).
    fn account(&self, spent: &mut Overhead) {
        let mut results = self.results.borrow_mut();
        results.overhead.get_or_insert_with(Overhead::default).add(spent);
        *spent = Overhead::default();
    }

    fn run_id(&self) -> String {
        self.results.borrow().run_id.clone()
    }
}

/// How an engine's worker ended.
enum WorkerEnd {
    /// No cell left to take.
    Drained,
    /// Its engine stopped answering and did not come back in time; its cells left are for the other engines.
    EngineLost,
}

/// Runs every cell, spread over `engines` (one build at a time on each; a cell stays on the engine that took it).
/// `results` holds the provenance and receives the records; it is written to `plan.results_path` after every build.
/// A build that fails, for any reason including an engine error, is recorded with its error and the run goes on
/// with the next cell. `interrupt` becoming `true` stops the run between or during builds.
pub async fn run(
    engines: &[RunEngine],
    plan: &Plan,
    results: &mut Results,
    on_event: &mut dyn FnMut(Event<'_>),
    interrupt: &mut watch::Receiver<bool>,
) -> Result<(), RunError> {
    for slot in engines {
        if !results.engines.iter().any(|e| e.name == slot.name) {
            results.engines.push(slot.record());
        }
    }
    if let Spread::Matrix { .. } = plan.spread {
        // A resumed matrix goes on with the engines that began it: a record of another engine has no pair here.
        if let Some(stray) = results.records.iter().find(|r| !engines.iter().any(|e| e.name == r.engine)) {
            return Err(RunError::NotResumable {
                path: plan.results_path.clone(),
                problem: format!(
                    "it holds builds on the engine `{}`, which this run does not use (resume a matrix with the same --engine options: {})",
                    stray.engine,
                    results.record_engines().join(", ")
                ),
            });
        }
    }
    results.write(&plan.results_path)?;
    let queues: Vec<RefCell<VecDeque<&Cell>>> = match &plan.spread {
        Spread::Shared => vec![RefCell::new(plan.cells.iter().collect())],
        spread => engines.iter().map(|e| RefCell::new(spread.cells_of(&plan.cells, &e.name).unwrap_or_default().into())).collect(),
    };
    let sink = Sink {
        results: RefCell::new(results),
        on_event: RefCell::new(on_event),
        counter: RefCell::new(Counter { done: 0, total: plan.builds_on(engines) }),
        queues,
        path: &plan.results_path,
    };
    let workers = engines.iter().enumerate().map(|(position, slot)| work(slot, position, plan, &sink, interrupt.clone()));
    let ends = futures_util::future::try_join_all(workers).await;
    let left = sink.left();
    let results = sink.results.into_inner();
    match ends {
        Err(RunError::Interrupted(_)) => {
            results.write(&plan.results_path)?;
            let _ = std::fs::remove_dir(&plan.work_dir);
            return Err(RunError::Interrupted(plan.results_path.clone()));
        }
        Err(e) => return Err(e),
        // Cells are left only when every engine was lost; a lost engine whose cells the others took ends nothing.
        Ok(ends) if left > 0 || ends.iter().all(|e| matches!(e, WorkerEnd::EngineLost)) => {
            return Err(RunError::EngineLost { path: plan.results_path.clone(), waited: plan.engine_wait });
        }
        Ok(_) => {}
    }
    // Cells finish in any order over several engines: the file keeps the plan's order, then the engines' (a cell's
    // builds on one engine in theirs).
    let order: Vec<String> = engines.iter().map(|e| e.name.clone()).collect();
    results.records.sort_by_key(|r| (r.cell.unwrap_or(usize::MAX), order.iter().position(|n| *n == r.engine).unwrap_or(usize::MAX)));
    results.complete = true;
    results.write(&plan.results_path)?;
    let _ = std::fs::remove_dir(&plan.work_dir); // only when empty: every cell removed its own
    Ok(())
}

/// One engine's worker (the engine at `position` in the run's): takes its next cell until none is left.
async fn work(slot: &RunEngine, position: usize, plan: &Plan, sink: &Sink<'_, '_>, interrupt: watch::Receiver<bool>) -> Result<WorkerEnd, RunError> {
    let mut ctx = RunContext { slot, engine: &slot.engine, plan, proxy: &slot.proxy, interrupt, engine_lost: false, spent: Overhead::default() };
    let cells = plan.cells.len();
    loop {
        let Some(cell) = sink.next_cell(position) else { return Ok(WorkerEnd::Drained) };
        if *ctx.interrupt.borrow() {
            return Err(RunError::Interrupted(plan.results_path.clone()));
        }
        let started = Instant::now();
        sink.event(Event::CellStarted { engine: &slot.name, cell, of: cells });
        if slot.isolation == Isolation::Private {
            let emptying = Instant::now();
            let emptied = tokio::select! {
                e = slot.engine.empty() => e,
                _ = ctx.interrupt.changed() => return Err(RunError::Interrupted(plan.results_path.clone())),
            };
            ctx.spent.cleanup_ms += ms(emptying.elapsed());
            if let Err(e) = emptied {
                sink.event(Event::Warning { message: format!("engine {}: could not be emptied before {} ({e}); the cell runs on what it holds", slot.name, cell.label()) });
            }
        }
        ctx.proxy.unpublished.set(cell.scenario.unpublished.iter().filter_map(|u| {
            let (m, v) = u.split_once('@')?;
            Some((m.to_string(), v.to_string()))
        }));
        ctx.proxy.shaping.set(cell.network.shaping);
        let outcome = run_cell(&mut ctx, cell, sink).await;
        ctx.proxy.unpublished.set([]);
        ctx.proxy.shaping.set(Shaping::default());
        let cleaning = Instant::now();
        if let Err(e) = cleanup_cell(ctx.engine, plan, &workspace_id(&sink.run_id(), cell, slot, &plan.spread)).await {
            sink.event(Event::Warning { message: format!("after {}: {e}", cell.label()) });
        }
        ctx.spent.cleanup_ms += ms(cleaning.elapsed());
        ctx.spent.outside_ms += (ms(started.elapsed()) - ctx.spent.builds_ms).max(0.0);
        sink.account(&mut ctx.spent);
        outcome?;
        if std::mem::take(&mut ctx.engine_lost) {
            sink.event(Event::Warning {
                message: format!("engine {}: it stopped answering during {}; waiting up to {} for it to come back", slot.name, cell.label(), humantime::format_duration(plan.engine_wait)),
            });
            let waiting = Instant::now();
            let back = tokio::select! {
                back = wait_for_engine(ctx.engine, plan.engine_wait) => back,
                _ = ctx.interrupt.changed() => return Err(RunError::Interrupted(plan.results_path.clone())),
            };
            let waited = ms(waiting.elapsed());
            ctx.spent.waiting_ms += waited;
            ctx.spent.outside_ms += waited;
            sink.account(&mut ctx.spent);
            if !back {
                sink.event(Event::Warning { message: format!("engine {}: not back after {}; it takes no more cells", slot.name, humantime::format_duration(plan.engine_wait)) });
                return Ok(WorkerEnd::EngineLost);
            }
            sink.event(Event::Warning {
                message: format!("engine {}: it answers again; going on with the next cell (`--resume {}` later redoes {})", slot.name, plan.results_path.display(), cell.label()),
            });
        }
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

/// Polls the engine until it answers or `limit` has passed; true when it is back.
async fn wait_for_engine(engine: &Engine, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if engine.answers().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What identifies a cell in a results file: its template, scenario, builder, repetition and network.
fn cell_key(variant: &str, scenario: &str, builder: Builder, repetition: u32, network: &str) -> String {
    format!("{variant} × {scenario} · {} · rep {repetition} · {network}", builder.name())
}

/// For `--resume`: keeps the records of the cells `results` finished, drops those of cells it did not (cut short by
/// an interrupt or a lost engine, to be built again whole), and returns the cells still to run with how they meet the
/// engines. In a matrix (`matrix`) the unit is a cell on one engine: the cells returned are those some engine has
/// not finished, and [`Spread::Matrix`] names the (cell, engine) pairs finished. Refuses a file with a cell this run
/// does not have (it was made with other options), and a matrix file resumed without `--matrix` or the reverse.
pub fn resume(cells: Vec<Cell>, results: &mut Results, path: &Path, matrix: bool) -> Result<(Vec<Cell>, Spread), RunError> {
    let not_resumable = |problem: String| RunError::NotResumable { path: path.to_path_buf(), problem };
    if results.options.matrix != matrix {
        return Err(not_resumable(if matrix {
            "it was written by a run without --matrix (resume it without --matrix)".to_string()
        } else {
            "it was written by a matrix run (resume it with --matrix and the same --engine options)".to_string()
        }));
    }
    let keys: Vec<String> = cells.iter().map(|c| cell_key(&c.variant.name, &c.scenario.name, c.builder, c.repetition, &c.network.name)).collect();
    let record_key = |r: &BuildRecord| cell_key(&r.variant, &r.scenario, r.builder, r.repetition, &r.network);
    if let Some(stray) = results.records.iter().map(record_key).find(|k| !keys.contains(k)) {
        return Err(not_resumable(format!("it holds the cell {stray}, which these options do not make (resume with the options of the run that wrote it)")));
    }
    // The unit of work: a cell (key, engine `None`), or in a matrix a cell on one engine.
    let unit = |r: &BuildRecord| (record_key(r), matrix.then(|| r.engine.clone()));
    let finished = |cell: &Cell, unit_of: &(String, Option<String>)| {
        let records: Vec<&BuildRecord> = results.records.iter().filter(|r| &unit(r) == unit_of).collect();
        let lost = records.iter().any(|r| r.error.as_deref().is_some_and(|e| e.starts_with(ENGINE_LOST)));
        // Every build of the cell recorded, or it ended at a failure of its own (a failure ends a cell).
        !lost && (records.len() == cell.builds() || records.last().is_some_and(|r| !r.outcome.is_ok()))
    };
    let mut units: Vec<(String, Option<String>)> = Vec::new();
    for r in &results.records {
        if !units.contains(&unit(r)) {
            units.push(unit(r));
        }
    }
    let done: Vec<(String, Option<String>)> = units
        .into_iter()
        .filter(|u| keys.iter().position(|k| *k == u.0).is_some_and(|i| finished(&cells[i], u)))
        .collect();
    results.records.retain(|r| done.contains(&unit(r)));
    results.complete = false;
    if !matrix {
        let left = cells.into_iter().zip(keys).filter(|(_, k)| !done.iter().any(|(d, _)| d == k)).map(|(c, _)| c).collect();
        return Ok((left, Spread::Shared));
    }
    // The plan keeps every cell: each engine builds those it has not finished (an engine of the run that the file
    // never names builds them all).
    let pairs: BTreeSet<(usize, String)> = cells
        .iter()
        .zip(&keys)
        .flat_map(|(c, k)| done.iter().filter(move |(d, _)| d == k).filter_map(move |(_, e)| e.clone().map(|e| (c.index, e))))
        .collect();
    Ok((cells, Spread::Matrix { done: pairs }))
}

fn cell_id(run_id: &str, cell: &Cell) -> String {
    format!("{run_id}-{}", cell.index + 1)
}

/// The folder name of a cell's scratch workspace: the cell's id, with its engine's name in a matrix (where every
/// engine builds the cell, at the same time).
fn workspace_id(run_id: &str, cell: &Cell, slot: &RunEngine, spread: &Spread) -> String {
    match spread {
        Spread::Shared => cell_id(run_id, cell),
        Spread::Matrix { .. } => {
            let engine: String = slot.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
            format!("{}-{engine}", cell_id(run_id, cell))
        }
    }
}

fn cell_tag(run_id: &str, cell: &Cell) -> String {
    let clean: String = cell
        .variant
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("layerbench/{}:{}", clean.trim_start_matches(['.', '-', '_']), cell_id(run_id, cell))
}

/// One cell: the workspace, the baseline and each step. Returns an error only
/// when the run must stop (an interrupt, results that cannot be written).
async fn run_cell(ctx: &mut RunContext<'_>, cell: &Cell, sink: &Sink<'_, '_>) -> Result<(), RunError> {
    let plan = ctx.plan;
    let slot = ctx.slot;
    let run_id = sink.run_id();
    // The cell's files (its salt and step nonces) are the same on every engine of a matrix, so each builds the same
    // inputs; its scratch folder is the engine's own, as the engines build it at once.
    let id = cell_id(&run_id, cell);
    let mut build_args = cell.variant.build_args.clone();
    build_args.insert("GOPROXY".to_string(), ctx.proxy.url.clone());
    build_args.insert("GOSUMDB".to_string(), "off".to_string());
    let skip_rest = |from_step: usize| sink.skip(cell.builds() - from_step);

    let cell_dir = plan.work_dir.join(workspace_id(&run_id, cell, slot, &plan.spread));
    if cell_dir.exists() {
        let _ = std::fs::remove_dir_all(&cell_dir);
    }
    if *ctx.interrupt.borrow() {
        return Err(RunError::Interrupted(plan.results_path.clone()));
    }
    let copying = Instant::now();
    let made = make_workspace(ctx, cell, &cell_dir, &id).await?.map(|ws| ws.with_origin(&plan.app, &cell.scenario.name));
    ctx.spent.workspace_ms += ms(copying.elapsed());
    let ws = match made {
        Ok(ws) => ws,
        Err(e) => {
            let record = failed_record(cell, "baseline", plan.cache_state, &build_args, format!("the scratch workspace could not be made: {e}"));
            sink.push(slot, cell, record)?;
            skip_rest(0);
            return Ok(());
        }
    };

    // `--frontend builtin`: the copy's Dockerfile loses its `# syntax=` line, and every build of the cell says so.
    let frontend_note = match plan.frontend {
        crate::results::Frontend::Builtin => match ws.drop_syntax_directive() {
            Ok(dropped) => dropped.map(|d| {
                format!("built with the engine's built-in Dockerfile frontend (--frontend builtin): layerbench's copy of the Dockerfile dropped line {}, `{}`", d.line, d.text)
            }),
            Err(e) => {
                let record = failed_record(cell, "baseline", plan.cache_state, &build_args, format!("the Dockerfile's `# syntax=` line could not be dropped: {e}"));
                sink.push(slot, cell, record)?;
                skip_rest(0);
                return Ok(());
            }
        },
        crate::results::Frontend::Directive => None,
    };
    let mut run = CellRun { cell, ws, build_args, previous: None, run_id, frontend_note };
    if cell.builder == Builder::Legacy {
        if let Some(feature) = run.ws.dockerfile_model().ok().and_then(|m| m.buildkit_only_feature()) {
            // Not a failure: the legacy builder cannot run this Dockerfile at all.
            let mut record = run.failed("baseline", plan.cache_state, format!("not applicable: {feature} needs BuildKit"));
            record.outcome = Outcome::NotApplicable;
            sink.push(slot, cell, record)?;
            skip_rest(0);
            return Ok(());
        }
    }

    if plan.cache_state == CacheState::Warm {
        // The warm-up build is not recorded: it only puts the baseline into the cache.
        let _ = build_once(ctx, &mut run, sink, "warm-up", false, &mut |_| {}).await?;
    }
    sink.build_started(&slot.name, cell, "baseline");
    let cold = plan.cache_state == CacheState::Cold;
    let record = build_once(ctx, &mut run, sink, "baseline", cold, &mut |s| sink.event(Event::StepFinished { step: s })).await?;
    let failed = !record.outcome.is_ok();
    sink.push(slot, cell, record)?;
    if failed {
        skip_rest(1);
        return Ok(());
    }

    for (i, step) in cell.scenario.steps.iter().enumerate() {
        let nonce = format!("{id}-{}", i + 1);
        let mut applied = Applied::default();
        let changing = Instant::now();
        let applied_ok = match prefetch_bumps(&run.ws, step, &ctx.proxy.source, &plan.store).await {
            Ok(Some(versions)) => apply_step(&run.ws, step, &nonce, &versions, &mut applied),
            Ok(None) => apply_step(&run.ws, step, &nonce, &plan.store, &mut applied),
            Err(message) => {
                let record = run.failed(&step.name, plan.cache_state, message);
                sink.skip(1);
                sink.push(slot, cell, record)?;
                skip_rest(i + 2);
                return Ok(());
            }
        };
        ctx.spent.workspace_ms += ms(changing.elapsed());
        if let Err(e) = applied_ok {
            let record = run.failed(&step.name, plan.cache_state, e.to_string());
            sink.skip(1);
            sink.push(slot, cell, record)?;
            skip_rest(i + 2);
            return Ok(());
        }
        for (k, v) in &applied.build_args {
            run.build_args.insert(k.clone(), v.clone());
        }
        for (m, v) in &applied.published {
            ctx.proxy.unpublished.publish(m, v);
        }
        sink.build_started(&slot.name, cell, &step.name);
        let mut record = build_once(ctx, &mut run, sink, &step.name, false, &mut |s| sink.event(Event::StepFinished { step: s })).await?;
        record.notes.splice(0..0, applied.notes);
        let failed = !record.outcome.is_ok();
        sink.push(slot, cell, record)?;
        if failed {
            skip_rest(i + 2);
            return Ok(());
        }
    }
    Ok(())
}

pub fn apply_step(ws: &Workspace, step: &Step, nonce: &str, versions: &dyn ModuleVersions, applied: &mut Applied) -> Result<(), WorkspaceError> {
    for change in &step.changes {
        ws.apply(change, nonce, &step.name, versions, applied)?;
    }
    Ok(())
}

/// With an upstream GOPROXY, the versions a step's dependency bumps choose
/// from are the store's and the upstream's, and the chosen version's files are
/// fetched (and kept) before the bump rewrites go.sum with their hashes.
/// `None` without an upstream or without bumps: the store alone answers.
pub async fn prefetch_bumps(ws: &Workspace, step: &Step, source: &ModuleSource, store: &StoreLayout) -> Result<Option<Prefetched>, String> {
    let Some(upstream) = source.upstream_url() else { return Ok(None) };
    let bumps: Vec<(&String, &String)> = step
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::BumpModule { module, version } => Some((module, version)),
            _ => None,
        })
        .collect();
    if bumps.is_empty() {
        return Ok(None);
    }
    let mut prefetched = Prefetched {
        store: store.clone(),
        description: format!("the module store {} and the upstream {upstream}", store.root().display()),
        versions: BTreeMap::new(),
        layouts: BTreeMap::new(),
    };
    let go_mod = std::fs::read_to_string(ws.root().join("go.mod")).unwrap_or_default();
    for (module, version) in bumps {
        // A module or version that cannot be resolved is left to the bump itself, whose error names it.
        let module = if module == FIRST_DIRECT_DEPENDENCY {
            match first_direct_requirement(&go_mod) {
                Some(r) => r.module,
                None => continue,
            }
        } else {
            module.clone()
        };
        let versions = source
            .versions(&module)
            .await
            .map_err(|e| format!("step `{}`: the versions of {module} could not be listed: {e}", step.name))?;
        let version = if version == NEXT_VERSION {
            let current = requirements(&go_mod).into_iter().find(|r| r.module == module).map(|r| r.version);
            match current.and_then(|c| next_version(&c, &versions)) {
                Some(v) => v.as_str().to_string(),
                None => {
                    prefetched.versions.insert(module, versions);
                    continue;
                }
            }
        } else {
            version.clone()
        };
        prefetched.versions.insert(module.clone(), versions);
        let layout = source
            .ensure(&module, &version)
            .await
            .map_err(|e| format!("step `{}`: {module}@{version} could not be fetched: {e}", step.name))?;
        prefetched.layouts.insert((module, version), layout);
    }
    Ok(Some(prefetched))
}

fn failed_record(cell: &Cell, step: &str, cache_state: CacheState, build_args: &BTreeMap<String, String>, error: String) -> BuildRecord {
    BuildRecord {
        variant: cell.variant.name.clone(),
        scenario: cell.scenario.name.clone(),
        step: step.to_string(),
        repetition: cell.repetition,
        builder: cell.builder,
        cache_state: BuildStart::of(step, cache_state),
        started_unix_ms: crate::results::unix_ms_now(),
        wall_ms: 0.0,
        outcome: Outcome::Failed,
        error: Some(error),
        layers: Vec::new(),
        image: None,
        proxy: ProxyRecord::default(),
        build_args: build_args.clone(),
        notes: Vec::new(),
        network: cell.network.name.clone(),
        inspection: None,
        cell: Some(cell.index),
        engine: String::new(),
        isolation: Isolation::Shared,
        engine_version: None,
        error_log: Vec::new(),
    }
}

/// One cell while it runs: its workspace, the build arguments its steps have set so far, and what its previous build saw (to explain this build's misses).
struct CellRun<'c> {
    cell: &'c Cell,
    ws: Workspace,
    build_args: BTreeMap<String, String>,
    previous: Option<BuildInputs>,
    run_id: String,
    /// Said on every build when the Dockerfile's `# syntax=` line was dropped.
    frontend_note: Option<String>,
}

impl CellRun<'_> {
    fn failed(&self, step: &str, cache_state: CacheState, error: String) -> BuildRecord {
        failed_record(self.cell, step, cache_state, &self.build_args, error)
    }
}

/// The image id each stage's `FROM` resolves to in the engine (none for `scratch` or another stage; unknown when the engine cannot say).
async fn resolve_base_images(engine: &Engine, model: &DockerfileModel, build_args: &BTreeMap<String, String>) -> BTreeMap<String, BaseImageRef> {
    let mut out = BTreeMap::new();
    for (stage, reference) in base_image_references(model, build_args) {
        let id = engine.image_id(&reference).await.ok().flatten();
        out.insert(stage, BaseImageRef { reference, id });
    }
    out
}

/// When a BuildKit build failed because the engine could not pull the frontend image the Dockerfile's `# syntax=`
/// line names: one line naming the directive and its line, and the way out.
pub fn unreachable_frontend(dockerfile: &str, builder: Builder, message: &str) -> Option<String> {
    let directive = crate::dockerfile::syntax_directive(dockerfile).filter(|_| builder == Builder::Buildkit)?;
    let repository = directive.image.split(['@', ':']).next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
    let about_frontend = message.contains(&directive.image) || (!repository.is_empty() && message.contains(&format!("{repository}:"))) || message.contains("frontend");
    let unreachable = ["failed to resolve", "failed to do request", "no such host", "pull access denied", "not found", "connection refused", "i/o timeout", "failed to fetch"].iter().any(|m| message.contains(m));
    (about_frontend && unreachable).then(|| {
        let why = message.lines().next().unwrap_or_default().trim();
        format!(
            "the Dockerfile's `{}` (line {}) names a frontend image the engine cannot pull ({why}); build with `--frontend builtin` (or `frontend = \"builtin\"` in the suite or project file) to use the engine's built-in frontend",
            directive.text, directive.line
        )
    })
}

/// Copies the app into the cell's scratch workspace on a blocking thread; an interrupt stops the copy between two
/// files, removes what it made, and stops the run.
async fn make_workspace(ctx: &mut RunContext<'_>, cell: &Cell, cell_dir: &Path, id: &str) -> Result<Result<Workspace, WorkspaceError>, RunError> {
    let layout = match Layout::new(&ctx.plan.app, &ctx.plan.context, &cell.variant.dockerfile) {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut copy = tokio::task::spawn_blocking({
        let (stop, tree, id) = (stop.clone(), cell_dir.join("tree"), id.to_string());
        move || Workspace::create_unless(&layout, &tree, Some(&id), &stop)
    });
    tokio::select! {
        made = &mut copy => Ok(made.unwrap_or_else(|e| Err(WorkspaceError::Io { action: "copy", path: cell_dir.to_path_buf(), source: std::io::Error::other(e) }))),
        _ = ctx.interrupt.changed() => {
            stop.store(true, Ordering::Relaxed);
            let _ = copy.await;
            let _ = std::fs::remove_dir_all(cell_dir);
            Err(RunError::Interrupted(ctx.plan.results_path.clone()))
        }
    }
}

/// One build, recorded whatever happens to it: a context that cannot be
/// made, a build error and an engine error all give a failed record. Only an
/// interrupt is an error. Each executed step gets its miss reason against the
/// cell's previous build, and this build becomes the previous one.
async fn build_once(
    ctx: &mut RunContext<'_>,
    run: &mut CellRun<'_>,
    sink: &Sink<'_, '_>,
    step: &str,
    no_cache: bool,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<BuildRecord, RunError> {
    let (cell, ws, build_args, run_id) = (run.cell, &run.ws, &run.build_args, run.run_id.as_str());
    let cache_state = ctx.plan.cache_state;
    let failed = |message: String| failed_record(cell, step, cache_state, build_args, message);
    let preparing = Instant::now();
    let model = match ws.dockerfile_model() {
        Ok(m) => m,
        Err(e) => return Ok(failed(format!("the Dockerfile could not be read: {e}"))),
    };
    let model_text = std::fs::read_to_string(ws.dockerfile()).unwrap_or_default();
    // The context the engine's own CLI would send: its release's `.dockerignore` rules.
    let context = match ContextSource::new(ws.context_dir(), ws.dockerfile(), cell.builder, IgnoreDialect::of_engine(&ctx.engine.version), ctx.plan.context_transfer) {
        Ok(c) => c,
        Err(e) => return Ok(failed(format!("the build context could not be made: {e}"))),
    };
    let mut notes: Vec<String> = model
        .stages_running_go_without_goproxy()
        .into_iter()
        .map(|stage| format!("stage `{stage}` runs the go command but declares no `ARG GOPROXY`: its module downloads do not go through layerbench's proxy (and are not recorded)"))
        .collect();
    notes.extend(run.frontend_note.clone());
    for (line, kind, id) in model.session_mounts() {
        let what = if kind == "secret" { format!("the secret `{id}`") } else { format!("the SSH agent `{id}`") };
        notes.push(format!(
            "line {line} mounts {what}: layerbench provides no secrets and forwards no SSH agent, so the step runs without it (a mount marked `required=true` fails the build); its content is in no cache key either way"
        ));
    }
    if cell.builder == Builder::Buildkit && context.dockerfile().starts_with(HIDDEN_DOCKERFILE_PREFIX) {
        notes.push(format!(
            "the Dockerfile is in this build's context as `{}`: the Docker CLI hides it from COPY (the ignore rules exclude it, or it lies outside the context), but BuildKit reads it from the tar layerbench sends, so an edit of the Dockerfile can miss a `COPY . .` that the CLI's build would hit",
            context.dockerfile()
        ));
    }
    // What this build sees, for the miss reasons; its context files come from the walk that sends them.
    let base_images = resolve_base_images(ctx.engine, &model, build_args).await;
    // A base image the engine lacks would be pulled by the build; here no registry answers, and the stand-ins were
    // made before the first build: a missing one has none, and the build does not start.
    for image in base_images.values().filter(|b| b.id.is_none()).map(|b| &b.reference) {
        if let Ok(None) = ctx.engine.image(image).await {
            return Ok(failed(crate::images::missing_image_message(image, ctx.engine.name())));
        }
    }
    let mut labels = BTreeMap::new();
    labels.insert(KIND_LABEL.to_string(), "build".to_string());
    labels.insert(RUN_LABEL.to_string(), run_id.to_string());
    let request = BuildRequest {
        what: format!("{} ({})", cell.label(), step),
        context,
        tag: cell_tag(run_id, cell),
        target: cell.variant.target.clone(),
        build_args: build_args.clone(),
        labels,
        network_mode: "host".to_string(),
        no_cache,
    };
    let proxy = &ctx.proxy.log;
    let mark = proxy.len();
    ctx.spent.context_ms += ms(preparing.elapsed());
    let started_unix_ms = crate::results::unix_ms_now();
    let started = Instant::now();
    if *ctx.interrupt.borrow() {
        return Err(RunError::Interrupted(ctx.plan.results_path.clone()));
    }
    // Dropping the build's future closes its connection, and the engine cancels the build.
    let timeout = ctx.plan.build_timeout;
    let outcome = tokio::select! {
        r = ctx.engine.build(request, progress) => Some(r),
        _ = ctx.interrupt.changed() => return Err(RunError::Interrupted(ctx.plan.results_path.clone())),
        _ = tokio::time::sleep(timeout) => None,
    };
    let wall_ms = ms(started.elapsed());
    ctx.spent.builds_ms += wall_ms;
    // Over several engines the log holds every lane's requests: this build's are its engine's lane's.
    let requests: Vec<ProxyRequest> = proxy.since(mark).into_iter().filter(|r| r.lane == ctx.proxy.lane).collect();
    let outcome = match outcome {
        Some(Ok(o)) => o,
        None => {
            let mut record = failed(format!("the build had not finished after {} (the build timeout): it was cancelled in the engine", humantime::format_duration(timeout)));
            record.outcome = Outcome::TimedOut;
            record.started_unix_ms = started_unix_ms;
            record.wall_ms = wall_ms;
            record.proxy = proxy_record(&requests);
            return Ok(record);
        }
        Some(Err(e)) => {
            // An engine that no longer answers is told from one that refused the build.
            let unreadable_context = matches!(e, EngineError::Context { .. });
            let lost = !unreadable_context && !ctx.engine.answers().await;
            ctx.engine_lost |= lost;
            let mut record = failed(if lost {
                format!("{ENGINE_LOST}: {e}")
            } else if unreadable_context {
                e.to_string()
            } else {
                format!("the engine failed during the build: {e}")
            });
            record.started_unix_ms = started_unix_ms;
            record.wall_ms = wall_ms;
            record.proxy = proxy_record(&requests);
            return Ok(record);
        }
    };
    let inspecting = Instant::now();
    let inspection = match (&outcome.image, ctx.plan.inspect) {
        (Some(image), true) => tokio::select! {
            i = inspect_cached(ctx.engine, image, &cell.variant, sink, no_cache) => Some(i),
            _ = ctx.interrupt.changed() => {
                // A probe's container outlives its dropped wait: remove this run's.
                let _ = ctx.engine.remove_labelled(Some(&["run"]), Some(run_id)).await;
                return Err(RunError::Interrupted(ctx.plan.results_path.clone()));
            }
        },
        _ => None,
    };
    ctx.spent.inspection_ms += ms(inspecting.elapsed());
    let mut layers = layer_records(&model, cell.builder, &outcome.steps, started_unix_ms);
    // None when the engine stopped reading the context early: then nothing is explained.
    // A file of the context that can no longer be read leaves this build's misses unexplained, like a cut context.
    let hashing = Instant::now();
    let sent = outcome.context.and_then(|mut sent| sent.fill_digests().ok().map(|()| sent));
    ctx.spent.context_ms += ms(hashing.elapsed());
    let inputs = sent.map(|sent| BuildInputs {
        base_images,
        model: model.clone(),
        build_args: build_args.clone(),
        context: sent.contents,
        no_cache,
    });
    if let Some(inputs) = inputs {
        explain(run.previous.as_ref(), &inputs, &mut layers);
        run.previous = Some(inputs);
    }
    Ok(BuildRecord {
        variant: cell.variant.name.clone(),
        scenario: cell.scenario.name.clone(),
        step: step.to_string(),
        repetition: cell.repetition,
        builder: cell.builder,
        cache_state: BuildStart::of(step, cache_state),
        started_unix_ms,
        wall_ms,
        outcome: if outcome.failure.is_none() { Outcome::Ok } else { Outcome::Failed },
        error_log: outcome.failure.as_ref().map(|f| f.log.clone()).unwrap_or_default(),
        error: outcome.failure.map(|f| unreachable_frontend(&model_text, cell.builder, &f.message).unwrap_or_else(|| format!("at `{}`: {}", f.step, f.message))),
        layers,
        image: outcome.image.map(|i| ImageRecord {
            id: i.id,
            size_bytes: i.size_bytes,
            layer_count: i.layers,
            user: i.user,
        }),
        proxy: proxy_record(&requests),
        build_args: build_args.clone(),
        notes,
        network: cell.network.name.clone(),
        inspection,
        cell: Some(cell.index),
        engine: String::new(),
        isolation: Isolation::Shared,
        engine_version: None,
    })
}

/// Inspects an image, reusing an earlier inspection of the same image id for the same template in this run.
/// What Go's layers hold is read once per template, from a cold build (exporting a large image takes seconds).
async fn inspect_cached(engine: &Engine, image: &crate::engine::ImageFacts, variant: &Variant, sink: &Sink<'_, '_>, cold: bool) -> Inspection {
    let (earlier, contents_read) = {
        let results = sink.results.borrow();
        let earlier = results
            .records
            .iter()
            .filter(|r| r.variant == variant.name && r.image.as_ref().is_some_and(|i| i.id == image.id))
            .find_map(|r| r.inspection.clone().filter(|i| i.error.is_none()));
        let contents_read = results.records.iter().any(|r| r.variant == variant.name && r.inspection.as_ref().is_some_and(|i| !i.layer_contents.is_empty()));
        (earlier, contents_read)
    };
    match earlier {
        Some(i) => i,
        None => {
            let options = InspectOptions {
                binary: variant.inspect_binary.clone(),
                probe: variant.probe.clone(),
                layer_contents: cold && !contents_read,
            };
            inspect_image(engine, image, &options).await
        }
    }
}

/// Maps the builder's step reports onto the Dockerfile's instructions, in file order.
pub fn layer_records(model: &DockerfileModel, builder: Builder, steps: &[StepReport], build_start_unix_ms: u64) -> Vec<LayerRecord> {
    let mut rows: Vec<(usize, LayerRecord)> = Vec::new();
    for (n, s) in steps.iter().enumerate() {
        let mapped = match builder {
            Builder::Buildkit => split_buildkit_name(&s.name).and_then(|(stage, i, text)| model.buildkit_step(&stage, i).map(|ins| (ins, text))),
            Builder::Legacy => split_legacy_step(&s.name).and_then(|(i, text)| model.legacy_step(i).map(|ins| (ins, text))),
        }
        // A step maps onto an instruction of the same keyword only: the legacy builder
        // numbers the build's labels after the last step it builds (with --target,
        // not the file's last), so its step N may lie beyond the target stage.
        .filter(|(ins, text)| text.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(&ins.keyword)) && !text.starts_with("LABEL io.layerbench."))
        .map(|(ins, _)| ins);
        let (stage, instruction, line, position) = match mapped {
            // A global ARG (before the first FROM): the legacy builder reports it as a step that never hits the cache; BuildKit does not report it. No cacheable step.
            Some(ins) if ins.stage.is_empty() => continue,
            Some(ins) => (ins.stage.clone(), ins.text.clone(), Some(ins.line), model.position(ins).unwrap_or(usize::MAX)),
            // The legacy builder turns the build's labels into extra steps at the end: not Dockerfile steps.
            None if s.name.contains(" : LABEL io.layerbench.") => continue,
            // The base image of a one-stage Dockerfile, as BuildKit names it (`[1/5] FROM docker.io/...`): kept, unmapped.
            None => (String::new(), s.name.clone(), None, usize::MAX - steps.len() + n),
        };
        let rel = |t: Option<u64>| t.map(|t| t as f64 - build_start_unix_ms as f64);
        let duration_ms = match (s.started_unix_ms, s.completed_unix_ms) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64,
            _ => 0.0,
        };
        rows.push((
            position,
            LayerRecord {
                stage,
                instruction,
                line,
                vertex: s.name.clone(),
                cached: s.cached,
                duration_ms,
                start_ms: rel(s.started_unix_ms),
                end_ms: rel(s.completed_unix_ms),
                error: s.error.clone(),
                miss_reason: None,
            },
        ));
    }
    rows.sort_by_key(|(p, _)| *p);
    rows.into_iter().map(|(_, r)| r).collect()
}

fn proxy_record(requests: &[ProxyRequest]) -> ProxyRecord {
    let mut modules: Vec<String> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Zip && r.status == 200)
        .filter_map(|r| Some(format!("{}@{}", r.module.as_ref()?, r.version.as_ref()?)))
        .collect();
    modules.sort();
    ProxyRecord {
        requests: requests.len(),
        bytes: requests.iter().map(|r| r.bytes).sum(),
        misses: requests.iter().filter(|r| r.is_miss()).count(),
        modules,
        log: requests
            .iter()
            .map(|r| ServedRequest {
                path: r.path.clone(),
                module: r.module.clone(),
                version: r.version.clone(),
                kind: serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                status: r.status,
                bytes: r.bytes,
                served_from: r.served_from.as_str().to_string(),
            })
            .collect(),
    }
}

/// After a cell: its workspace goes, and so do dangling images from its builds.
/// Its last image stays tagged (`layerbench clean` removes it).
async fn cleanup_cell(engine: &Engine, plan: &Plan, id: &str) -> Result<(), RunError> {
    let root = plan.work_dir.join(id);
    if root.exists() {
        let _ = std::fs::remove_dir_all(&root);
    }
    engine.prune_dangling().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, cached: bool, a: u64, b: u64) -> StepReport {
        StepReport { name: name.into(), cached, started_unix_ms: Some(a), completed_unix_ms: Some(b), error: None }
    }

    const DOCKERFILE: &str = "FROM golang:1.23 AS build\nARG GOPROXY\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /out/app .\nFROM scratch\nCOPY --from=build /out/app /app\nUSER 1\n";

    #[test]
    fn a_resumed_run_keeps_finished_cells_and_builds_again_those_cut_short() {
        let edit = Scenario::parse("name = \"edit\"\ndescription = \"d\"\n[[step]]\nname = \"one\"\nchange = []\n[[step]]\nname = \"two\"\nchange = []\n", Path::new("edit.toml")).unwrap();
        let variants = [Variant::from_file(Path::new("/app/a.Dockerfile")), Variant::from_file(Path::new("/app/b.Dockerfile"))];
        let cells = cells(&variants, &[edit], &[Builder::Buildkit, Builder::Legacy], 1);
        let record = |variant: &str, builder: Builder, step: &str, outcome: Outcome, error: Option<&str>| {
            let mut r = crate::results::record_with(variant, "edit", step, 1.0, &[], 0);
            r.builder = builder;
            r.outcome = outcome;
            r.error = error.map(str::to_string);
            r
        };
        let lost = format!("{ENGINE_LOST}: connection refused");
        let mut results = crate::results::results_with(vec![
            // finished: every build
            record("a", Builder::Buildkit, "baseline", Outcome::Ok, None),
            record("a", Builder::Buildkit, "one", Outcome::Ok, None),
            record("a", Builder::Buildkit, "two", Outcome::Ok, None),
            // finished: ended at its own failure
            record("a", Builder::Legacy, "baseline", Outcome::Failed, Some("at `RUN x`: exit 1")),
            // cut short by the lost engine, then by an interrupt
            record("b", Builder::Buildkit, "baseline", Outcome::Ok, None),
            record("b", Builder::Buildkit, "one", Outcome::Failed, Some(&lost)),
            record("b", Builder::Legacy, "baseline", Outcome::Ok, None),
        ]);
        results.complete = true;
        let (left, spread) = resume(cells.clone(), &mut results, Path::new("r.json"), false).unwrap();
        assert_eq!(spread, Spread::Shared);
        let left: Vec<(String, Builder)> = left.iter().map(|c| (c.variant.name.clone(), c.builder)).collect();
        assert_eq!(left, [("b".to_string(), Builder::Buildkit), ("b".to_string(), Builder::Legacy)]);
        assert_eq!(results.records.len(), 4, "the records of the cells to build again are dropped");
        assert!(!results.complete);

        let mut other = crate::results::results_with(vec![record("c", Builder::Buildkit, "baseline", Outcome::Ok, None)]);
        let err = resume(cells, &mut other, Path::new("r.json"), false).unwrap_err().to_string();
        assert!(err.contains("r.json cannot be resumed by this run: it holds the cell c × edit · buildkit · rep 1 · loopback"), "{err}");
    }

    fn edit_cells() -> Vec<Cell> {
        let edit = Scenario::parse("name = \"edit\"\ndescription = \"d\"\n[[step]]\nname = \"one\"\nchange = []\n", Path::new("edit.toml")).unwrap();
        let variants = [Variant::from_file(Path::new("/app/a.Dockerfile")), Variant::from_file(Path::new("/app/b.Dockerfile"))];
        cells(&variants, &[edit], &[Builder::Buildkit], 1)
    }

    #[test]
    fn a_resumed_matrix_keeps_each_engines_finished_cells_and_builds_the_rest_on_that_engine() {
        let cells = edit_cells();
        let record = |variant: &str, cell: usize, engine: &str, step: &str, error: Option<&str>| {
            let mut r = crate::results::record_with(variant, "edit", step, 1.0, &[], 0);
            r.cell = Some(cell);
            r.engine = engine.into();
            r.outcome = if error.is_some() { Outcome::Failed } else { Outcome::Ok };
            r.error = error.map(str::to_string);
            r
        };
        let lost = format!("{ENGINE_LOST}: connection refused");
        let mut results = crate::results::results_with(vec![
            record("a", 0, "old", "baseline", None),
            record("a", 0, "old", "one", None),
            record("a", 0, "modern", "baseline", None),
            record("a", 0, "modern", "one", Some(&lost)),
            record("b", 1, "old", "baseline", None),
        ]);
        results.options.matrix = true;
        let (left, spread) = resume(cells.clone(), &mut results, Path::new("r.json"), true).unwrap();
        assert_eq!(left.len(), 2, "a matrix plan keeps every cell; each engine skips those it finished");
        let Spread::Matrix { done } = &spread else { panic!("{spread:?}") };
        assert_eq!(done.iter().cloned().collect::<Vec<_>>(), [(0, "old".to_string())]);
        assert_eq!(results.records.len(), 2, "only the pair (a, old) is kept: {:?}", results.records);
        let names = |engine: &str| spread.cells_of(&left, engine).unwrap().iter().map(|c| c.variant.name.clone()).collect::<Vec<_>>();
        assert_eq!(names("old"), ["b"]);
        assert_eq!(names("modern"), ["a", "b"]);
        assert_eq!(names("third"), ["a", "b"], "an engine the file never names builds every cell");

        let err = resume(cells.clone(), &mut results.clone(), Path::new("r.json"), false).unwrap_err().to_string();
        assert!(err.contains("written by a matrix run (resume it with --matrix"), "{err}");
        results.options.matrix = false;
        let err = resume(cells, &mut results, Path::new("r.json"), true).unwrap_err().to_string();
        assert!(err.contains("written by a run without --matrix"), "{err}");
    }

    #[test]
    fn a_matrix_needs_two_engines_and_no_shard() {
        assert!(check_matrix(2, None).is_ok());
        let one = check_matrix(1, None).unwrap_err().to_string();
        assert!(one.contains("--matrix builds every cell on every engine, and it was given 1"), "{one}");
        let shard = check_matrix(3, Some(crate::results::Shard { index: 1, count: 2 })).unwrap_err().to_string();
        assert!(shard.contains("--matrix cannot be combined with --shard 1/2"), "{shard}");
    }

    #[test]
    fn buildkit_reports_are_put_in_dockerfile_order_with_stages() {
        let model = DockerfileModel::parse(DOCKERFILE);
        let steps = vec![
            report("[build 4/5] RUN go mod download", true, 1010, 1010),
            report("[stage-1 1/1] COPY --from=build /out/app /app", false, 1500, 1510),
            report("[build 1/5] FROM docker.io/library/golang:1.23", false, 1000, 1000),
            report("[build 5/5] COPY . .", false, 1020, 1030),
        ];
        let rows = layer_records(&model, Builder::Buildkit, &steps, 1000);
        let names: Vec<&str> = rows.iter().map(|r| r.instruction.as_str()).collect();
        assert_eq!(names, ["FROM golang:1.23 AS build", "RUN go mod download", "COPY . .", "COPY --from=build /out/app /app"]);
        assert_eq!(rows[3].stage, "stage-1");
        assert_eq!(rows[2].duration_ms, 10.0);
        assert_eq!(rows[2].start_ms, Some(20.0));
    }

    #[test]
    fn an_app_with_a_root_dockerfile_and_no_dockerfiles_folder_has_that_template() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("Dockerfile"), "FROM x\n").unwrap();
        let v = variants(app.path(), &[]).unwrap();
        assert_eq!((v.len(), v[0].name.as_str()), (1, "Dockerfile"));
        let empty = tempfile::tempdir().unwrap();
        assert!(variants(empty.path(), &[]).unwrap_err().to_string().contains("--dockerfile"));
    }

    #[test]
    fn legacy_label_steps_after_a_target_stage_are_not_mapped_onto_later_stages() {
        let model = DockerfileModel::parse("FROM x AS build\nRUN a\nFROM scratch AS final\nCOPY --from=build /a /a\nFROM x AS debug\nRUN b\n");
        let steps = vec![
            report("Step 4/7 : COPY --from=build /a /a", false, 1, 2),
            report("Step 5/7 : LABEL io.layerbench.kind=build", false, 2, 3),
            report("Step 6/7 : LABEL io.layerbench.managed=true", false, 3, 4),
        ];
        let rows = layer_records(&model, Builder::Legacy, &steps, 0);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].line, rows[0].vertex.as_str()), (Some(4), "Step 4/7 : COPY --from=build /a /a"));
    }

    #[test]
    fn a_global_arg_is_no_step_for_either_builder() {
        let model = DockerfileModel::parse("ARG BASE=x\nFROM ${BASE} AS build\nRUN a\n");
        let legacy = vec![report("Step 1/3 : ARG BASE=x", false, 1, 2), report("Step 2/3 : FROM ${BASE} AS build", false, 2, 3), report("Step 3/3 : RUN a", true, 3, 4)];
        let rows = layer_records(&model, Builder::Legacy, &legacy, 0);
        assert_eq!(rows.iter().map(|r| r.instruction.as_str()).collect::<Vec<_>>(), ["FROM ${BASE} AS build", "RUN a"]);
    }

    #[test]
    fn legacy_reports_map_by_global_step_number() {
        let model = DockerfileModel::parse(DOCKERFILE);
        let steps = vec![report("Step 5/10 : RUN go mod download", true, 5, 6), report("Step 2/10 : ARG GOPROXY", false, 1, 2)];
        let rows = layer_records(&model, Builder::Legacy, &steps, 0);
        assert_eq!(rows[0].instruction, "ARG GOPROXY");
        assert_eq!(rows[0].stage, "build");
        assert!(rows[1].cached);
    }

    #[test]
    fn a_frontend_the_engine_cannot_pull_is_named_with_its_directive_line_and_the_way_out() {
        let dockerfile = "# syntax = docker/dockerfile:1.3\nFROM golang:1.23\n";
        let message = "failed to solve with frontend dockerfile.v0: failed to solve with frontend gateway.v0: docker.io/docker/dockerfile:1.3: failed to do request: Head \"https://registry-1.docker.io/v2/docker/dockerfile/manifests/1.3\": dial tcp: lookup registry-1.docker.io: no such host";
        let said = unreachable_frontend(dockerfile, Builder::Buildkit, message).expect("named");
        assert!(said.starts_with("the Dockerfile's `# syntax = docker/dockerfile:1.3` (line 1) names a frontend image the engine cannot pull"), "{said}");
        assert!(said.contains("--frontend builtin") && !said.contains('\n'), "{said}");
        // Not for the legacy builder (which ignores the line), another failure, or a Dockerfile without the line.
        assert_eq!(unreachable_frontend(dockerfile, Builder::Legacy, message), None);
        assert_eq!(unreachable_frontend(dockerfile, Builder::Buildkit, "process \"/bin/sh -c make\" did not complete successfully: exit code: 127"), None);
        assert_eq!(unreachable_frontend("FROM golang:1.23\n", Builder::Buildkit, message), None);
    }
}
