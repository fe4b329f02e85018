//! Engines and workers: which engine builds which cell, what the reporter is told, and resuming a run cut short.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::{Builder, Engine, StepReport};
use crate::goproxy::ModuleSource;
use crate::goproxy::server::{ProxyLog, ProxyServer, Shaping, ShapingControl, Unpublished};
use crate::results::{
    BuildRecord, EngineUse, Isolation, Overhead, Results,
};

use super::*;

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
    pub(super) spent: Overhead,
}

/// Progress through the run's builds, for events.
pub(super) struct Counter {
    pub(super) done: usize,
    pub(super) total: usize,
}

/// What the engines' workers share (they run as futures of one task, so nothing is borrowed across an await):
/// the results, the reporter, the build counter and the cells not yet taken: one queue all engines take from, or,
/// in a matrix, one per engine (by the engine's position).
pub(super) struct Sink<'r, 'e> {
    pub(super) results: RefCell<&'r mut Results>,
    pub(super) on_event: RefCell<&'e mut dyn FnMut(Event<'_>)>,
    pub(super) counter: RefCell<Counter>,
    pub(super) queues: Vec<RefCell<VecDeque<&'r Cell>>>,
    pub(super) path: &'r Path,
}

impl Sink<'_, '_> {
    pub(super) fn event(&self, event: Event<'_>) {
        (self.on_event.borrow_mut())(event);
    }

    /// The next cell for the engine at `position`: from its own queue in a matrix, else from the one shared queue.
    pub(super) fn next_cell(&self, position: usize) -> Option<&Cell> {
        let queue = self.queues.get(position).or_else(|| self.queues.first())?;
        queue.borrow_mut().pop_front()
    }

    /// The cells no engine has built yet.
    pub(super) fn left(&self) -> usize {
        self.queues.iter().map(|q| q.borrow().len()).sum()
    }

    /// Counts a build as started and tells the reporter.
    pub(super) fn build_started(&self, engine: &str, cell: &Cell, step: &str) {
        let (build, of) = {
            let mut counter = self.counter.borrow_mut();
            counter.done += 1;
            (counter.done, counter.total)
        };
        self.event(Event::BuildStarted { engine, cell, step, build, of });
    }

    /// Counts builds a cell will not make (it ended early).
    pub(super) fn skip(&self, builds: usize) {
        self.counter.borrow_mut().done += builds;
    }

    /// Records a build (stamped with its cell and engine), writes the results file and tells the reporter.
    pub(super) fn push(&self, slot: &RunEngine, cell: &Cell, mut record: BuildRecord) -> Result<(), RunError> {
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
    pub(super) fn account(&self, spent: &mut Overhead) {
        let mut results = self.results.borrow_mut();
        results.overhead.get_or_insert_with(Overhead::default).add(spent);
        *spent = Overhead::default();
    }

    pub(super) fn run_id(&self) -> String {
        self.results.borrow().run_id.clone()
    }
}

/// How an engine's worker ended.
pub(super) enum WorkerEnd {
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
pub(super) async fn work(slot: &RunEngine, position: usize, plan: &Plan, sink: &Sink<'_, '_>, interrupt: watch::Receiver<bool>) -> Result<WorkerEnd, RunError> {
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

/// Polls the engine until it answers or `limit` has passed; true when it is back.
pub(super) async fn wait_for_engine(engine: &Engine, limit: Duration) -> bool {
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
pub(super) fn cell_key(variant: &str, scenario: &str, builder: Builder, repetition: u32, network: &str) -> String {
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

/// After a cell: its workspace goes, and so do dangling images from its builds.
/// Its last image stays tagged (`layerbench clean` removes it).
pub(super) async fn cleanup_cell(engine: &Engine, plan: &Plan, id: &str) -> Result<(), RunError> {
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
    use crate::results::Outcome;
    use crate::scenario::Scenario;

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

}
