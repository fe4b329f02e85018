//! Progress of a run on stderr: on a terminal, indicatif bars (one per engine: its cell, step and time in the cell; one for the run: builds done of total and time left) with log lines above them; plain log lines otherwise.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::engine::StepReport;
use crate::results::{BuildRecord, Builder};
use crate::run::{Cell, Event};

/// How often the bars redraw on their own (elapsed times move between events).
const TICK: Duration = Duration::from_millis(250);

/// Prints run events to stderr.
pub struct Progress {
    /// Print each finished step (else only failed ones).
    verbose: bool,
    /// How many engines the run uses: their names prefix the log lines when there are several.
    engines: usize,
    started: Instant,
    clock: Arc<Mutex<RunClock>>,
    /// How many cells the run has (its events say so when a cell starts).
    cells: usize,
    /// The engine each running cell is on, and the number of its build in flight:
    /// a finished build's record names its cell, not its engine.
    running: HashMap<CellKey, (String, usize)>,
    /// The bars, on a terminal only.
    bars: Option<Bars>,
}

/// What is drawn on a terminal.
struct Bars {
    multi: MultiProgress,
    run: ProgressBar,
    /// One bar per engine, in the order the engines first started a cell.
    engines: Vec<(String, ProgressBar)>,
}

/// A cell as both its events and its builds' records name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CellKey {
    variant: String,
    scenario: String,
    builder: Builder,
    repetition: u32,
    network: String,
    /// In a matrix every engine builds the cell, at the same time.
    engine: String,
}

impl CellKey {
    fn of_cell(cell: &Cell, engine: &str) -> CellKey {
        CellKey {
            variant: cell.variant.name.clone(),
            scenario: cell.scenario.name.clone(),
            builder: cell.builder,
            repetition: cell.repetition,
            network: cell.network.name.clone(),
            engine: engine.to_string(),
        }
    }

    fn of_record(record: &BuildRecord) -> CellKey {
        CellKey {
            variant: record.variant.clone(),
            scenario: record.scenario.clone(),
            builder: record.builder,
            repetition: record.repetition,
            network: record.network.clone(),
            engine: record.engine.clone(),
        }
    }
}

impl Progress {
    /// Draws bars when stderr is a terminal; `engines` is how many engines the run uses, `builds` how many builds it counts.
    pub fn start(verbose: bool, engines: usize, builds: usize) -> Progress {
        Progress::drawn_to(verbose, engines, builds, std::io::stderr().is_terminal().then(ProgressDrawTarget::stderr))
    }

    /// Draws the bars to `target`, or prints plain lines when there is none.
    fn drawn_to(verbose: bool, engines: usize, builds: usize, target: Option<ProgressDrawTarget>) -> Progress {
        let started = Instant::now();
        let clock = Arc::new(Mutex::new(RunClock { total: builds, ..RunClock::default() }));
        let bars = target.map(|target| Bars::new(target, Arc::clone(&clock), started, builds));
        Progress {
            verbose,
            engines,
            started,
            clock,
            cells: 0,
            running: HashMap::new(),
            bars,
        }
    }

    /// A log line: above the bars on a terminal, else on stderr.
    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                if bars.multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }

    /// The engine's name when the run uses several.
    fn shown<'a>(&self, engine: &'a str) -> Option<&'a str> {
        (self.engines > 1).then_some(engine)
    }

    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::CellStarted { engine, cell, of } => {
                self.cells = of;
                self.line(&cell_line(self.shown(engine), cell.index + 1, of, &cell.label()));
                self.running.insert(CellKey::of_cell(cell, engine), (engine.to_string(), 0));
                if let Some(bars) = &mut self.bars {
                    let bar = bars.engine(engine);
                    bar.reset_elapsed();
                    bar.set_message(format!("cell {}/{of}: {}", cell.index + 1, cell.label()));
                }
            }
            Event::BuildStarted { engine, cell, step, build, of } => {
                if let Some(running) = self.running.get_mut(&CellKey::of_cell(cell, engine)) {
                    running.1 = build;
                }
                if let Ok(mut clock) = self.clock.lock() {
                    clock.total = of;
                }
                if let Some(bars) = &mut self.bars {
                    bars.run.set_length(of as u64);
                    bars.engine(engine).set_message(format!("cell {}/{}: {} · {step}", cell.index + 1, self.cells, cell.label()));
                }
                if self.verbose {
                    self.line(&build_started_line(self.shown(engine), build, of, step, self.started.elapsed()));
                }
            }
            Event::StepFinished { step } if self.verbose || step.error.is_some() => self.line(&step_line(step)),
            Event::StepFinished { .. } => {}
            Event::BuildFinished { record } => {
                let done = match self.clock.lock() {
                    Ok(mut clock) => {
                        clock.finished(self.started.elapsed());
                        (clock.done, clock.total)
                    }
                    Err(_) => (0, 0),
                };
                // A record names its engine; one that does not (a reporter fed by hand) matches its cell on any engine.
                let key = CellKey::of_record(record);
                let running = self.running.get(&key).or_else(|| self.running.iter().find(|(k, _)| CellKey { engine: k.engine.clone(), ..key.clone() } == **k).map(|(_, v)| v));
                let (engine, build) = running.cloned().unwrap_or_default();
                let build = if build == 0 { done.0 } else { build };
                self.line(&build_line(self.shown(&engine), build, done.1, record));
                if let Some(bars) = &self.bars {
                    bars.run.set_position(done.0 as u64);
                }
            }
            Event::Warning { message } => self.line(&format!("  warning: {message}")),
        }
    }

    /// Removes the bars, so what the run prints next starts on a clean line.
    pub fn finish(self) {
        if let Some(bars) = self.bars {
            for (_, bar) in &bars.engines {
                bar.finish_and_clear();
            }
            bars.run.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}

impl Bars {
    /// The run's bar, drawn to `target`; its time left is read from `clock` at every redraw (`started` is the run's start).
    fn new(target: ProgressDrawTarget, clock: Arc<Mutex<RunClock>>, started: Instant, builds: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        let left = move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
            let text = clock.lock().map(|c| c.left_text(started.elapsed())).unwrap_or_default();
            let _ = out.write_str(&text);
        };
        let style = ProgressStyle::with_template("run  [{bar:30}] {pos}/{len} builds · {elapsed_precise} elapsed · {left}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("left", left)
            .progress_chars("#>.");
        let run = multi.add(ProgressBar::new(builds as u64).with_style(style));
        run.enable_steady_tick(TICK);
        Bars { multi, run, engines: Vec::new() }
    }

    /// The bar of `engine`, added (above the run's) the first time the engine starts a cell.
    fn engine(&mut self, engine: &str) -> &ProgressBar {
        let at = match self.engines.iter().position(|(name, _)| name == engine) {
            Some(at) => at,
            None => {
                let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} · {elapsed} in the cell")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = self.multi.insert_before(&self.run, ProgressBar::new_spinner().with_style(style));
                bar.set_prefix(engine.to_string());
                bar.enable_steady_tick(TICK);
                self.engines.push((engine.to_string(), bar));
                self.engines.len() - 1
            }
        };
        &self.engines[at].1
    }
}

/// The run's pace, from the builds finished so far: what the time left is estimated from.
#[derive(Debug, Clone, Default)]
struct RunClock {
    done: usize,
    total: usize,
    /// The run's elapsed time when its latest build finished.
    last_finish: Option<Duration>,
}

impl RunClock {
    /// Counts a finished build, `elapsed` into the run.
    fn finished(&mut self, elapsed: Duration) {
        self.done += 1;
        self.last_finish = Some(elapsed);
    }

    /// The time left, `now` into the run: the builds still to come at the
    /// pace of the run so far (its elapsed time per finished build, so the
    /// time between builds and several engines working at once are both in
    /// it), less the time since the latest build finished. `None` before
    /// the first build finishes.
    fn left(&self, now: Duration) -> Option<Duration> {
        let last = self.last_finish?;
        let done = u32::try_from(self.done).ok().filter(|d| *d > 0)?;
        let remaining = u32::try_from(self.total.saturating_sub(self.done)).unwrap_or(u32::MAX);
        let at_last = last.checked_mul(remaining).map_or(Duration::MAX, |d| d / done);
        Some(at_last.saturating_sub(now.saturating_sub(last)))
    }

    /// The time left as the run's bar shows it.
    fn left_text(&self, now: Duration) -> String {
        match self.left(now) {
            None => "time left: after the first build".to_string(),
            Some(_) if self.done >= self.total => "done".to_string(),
            Some(left) => format!("about {} left", rounded(left)),
        }
    }
}

/// A duration as a person reads an estimate: seconds under a minute, then minutes, then hours and minutes.
fn rounded(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// `name: ` when the engine is shown, else nothing.
fn engine_prefix(engine: Option<&str>) -> String {
    engine.map(|e| format!("{e}: ")).unwrap_or_default()
}

/// The line that opens a cell.
pub fn cell_line(engine: Option<&str>, number: usize, of: usize, label: &str) -> String {
    format!("{}cell {number}/{of}: {label}", engine_prefix(engine))
}

/// The line that opens a build (`--verbose` only).
pub fn build_started_line(engine: Option<&str>, build: usize, of: usize, step: &str, elapsed: Duration) -> String {
    format!("{}  build {build}/{of}: {step} ({} elapsed)", engine_prefix(engine), clock_text(elapsed))
}

/// The one line (plus its errors) of a finished build.
pub fn build_line(engine: Option<&str>, build: usize, of: usize, record: &BuildRecord) -> String {
    let mut text = format!(
        "{}  build {build}/{of} => {}: {} in {:.1} s, {} proxy requests",
        engine_prefix(engine),
        record.step,
        record.outcome,
        record.wall_ms / 1000.0,
        record.proxy.requests
    );
    if let Some(e) = record.error_with_output() {
        for line in e.lines() {
            let _ = write!(text, "\n{}", crate::table::fit(&format!("     {line}")));
        }
    }
    if let Some(e) = record.inspection.as_ref().and_then(|i| i.error.as_ref()) {
        let _ = write!(text, "\n     inspection: {e}");
    }
    if let Some(rt) = record.inspection.as_ref().and_then(|i| i.runtime.as_ref()).filter(|rt| !rt.passed) {
        let _ = write!(text, "\n     probe {:?} exited {} (expected {})", rt.command, rt.exit_code, rt.expected_exit);
    }
    text
}

/// One finished step: outcome, seconds, name.
pub fn step_line(s: &StepReport) -> String {
    let secs = match (s.started_unix_ms, s.completed_unix_ms) {
        (Some(a), Some(b)) => format!("{:7.2} s", b.saturating_sub(a) as f64 / 1000.0),
        _ => "         ".to_string(),
    };
    let outcome = if s.error.is_some() {
        "FAILED  "
    } else if s.cached {
        "cached  "
    } else {
        "executed"
    };
    format!("    {outcome} {secs}  {}", s.name)
}

fn clock_text(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn clock(done: usize, total: usize, last_finish: u64) -> RunClock {
        RunClock { done, total, last_finish: Some(secs(last_finish)) }
    }

    #[test]
    fn the_time_left_is_the_remaining_builds_at_the_pace_so_far_counting_down_until_the_next_finishes() {
        // 4 of 10 builds in 120 s: 30 s a build, 6 to go.
        let c = clock(4, 10, 120);
        assert_eq!(c.left(secs(120)), Some(secs(180)));
        assert_eq!(c.left(secs(150)), Some(secs(150)), "counts down between builds");
        assert_eq!(c.left(secs(400)), Some(Duration::ZERO), "never below zero when a build runs long");
        assert_eq!(c.left_text(secs(120)), "about 3 min left");
    }

    #[test]
    fn the_pace_includes_engines_working_at_once_and_the_time_between_builds() {
        // Two engines each finished 3 builds of 40 s in 130 s of run (10 s outside builds).
        let c = clock(6, 12, 130);
        let left = c.left(secs(130)).unwrap();
        assert!(left < secs(6 * 40), "not the mean build time × remaining on one engine: {left:?}");
        assert_eq!(left.as_secs(), 130);
    }

    #[test]
    fn before_the_first_build_and_after_the_last_the_estimate_says_so() {
        let fresh = RunClock { total: 5, ..RunClock::default() };
        assert_eq!(fresh.left(secs(10)), None);
        assert_eq!(fresh.left_text(secs(10)), "time left: after the first build");
        let over = clock(5, 5, 300);
        assert_eq!(over.left(secs(300)), Some(Duration::ZERO));
        assert_eq!(over.left_text(secs(300)), "done");
    }

    #[test]
    fn a_finished_build_moves_the_clock() {
        let mut c = RunClock { total: 3, ..RunClock::default() };
        c.finished(secs(20));
        c.finished(secs(40));
        assert_eq!((c.done, c.left(secs(40))), (2, Some(secs(20))));
    }

    #[test]
    fn estimates_read_in_seconds_minutes_or_hours() {
        assert_eq!(rounded(secs(42)), "42 s");
        assert_eq!(rounded(secs(89)), "1 min");
        assert_eq!(rounded(secs(90)), "2 min");
        assert_eq!(rounded(secs(2 * 3600 + 5 * 60 + 9)), "2 h 05 min");
    }

    fn record(outcome: crate::results::Outcome, error: Option<&str>) -> BuildRecord {
        let mut r = crate::results::record_with("layered", "go-edit", "edit main.go", 1.234, &[], 3);
        r.outcome = outcome;
        r.error = error.map(str::to_string);
        r
    }

    #[test]
    fn a_finished_build_is_one_line_naming_its_engine_only_when_there_are_several() {
        let one = build_line(None, 3, 20, &record(crate::results::Outcome::Ok, None));
        assert_eq!(one, "  build 3/20 => edit main.go: ok in 1.2 s, 3 proxy requests");
        let several = build_line(Some("engine-b"), 3, 20, &record(crate::results::Outcome::Ok, None));
        assert_eq!(several, format!("engine-b: {one}"));
        let failed = build_line(None, 4, 20, &record(crate::results::Outcome::Failed, Some("RUN go build: exit 1")));
        assert_eq!(failed.lines().collect::<Vec<_>>(), ["  build 4/20 => edit main.go: failed in 1.2 s, 3 proxy requests", "     RUN go build: exit 1"]);
    }

    #[test]
    fn cell_and_build_lines_name_the_engine_when_there_are_several() {
        assert_eq!(cell_line(None, 2, 8, "layered × go-edit · buildkit · rep 1"), "cell 2/8: layered × go-edit · buildkit · rep 1");
        assert_eq!(cell_line(Some("e1"), 2, 8, "x"), "e1: cell 2/8: x");
        assert_eq!(build_started_line(Some("e1"), 5, 9, "baseline", secs(125)), "e1:   build 5/9: baseline (02:05 elapsed)");
    }

    fn cell(index: usize, variant: &str) -> Cell {
        let scenario = crate::scenario::Scenario::parse(
            "name = \"go-edit\"\ndescription = \"d\"\n[[step]]\nname = \"edit main.go\"\n",
            std::path::Path::new("go-edit.toml"),
        )
        .expect("a scenario");
        Cell {
            index,
            variant: crate::run::Variant {
                name: variant.to_string(),
                dockerfile: "/app/Dockerfile".into(),
                target: None,
                build_args: Default::default(),
                probe: None,
                inspect_binary: None,
            },
            scenario,
            builder: Builder::Buildkit,
            repetition: 1,
            network: crate::run::NetworkProfile::loopback(),
        }
    }

    #[test]
    fn on_a_terminal_each_engine_has_a_bar_with_its_cell_and_step_above_the_runs_count_and_log_lines_above_them() {
        let term = indicatif::InMemoryTerm::new(12, 140);
        let mut progress = Progress::drawn_to(false, 2, 4, Some(ProgressDrawTarget::term_like(Box::new(term.clone()))));
        std::thread::sleep(Duration::from_millis(300));
        assert!(term.contents().contains("0/4 builds"), "the run's count from the start\n{}", term.contents());
        let (a, b) = (cell(0, "layered"), cell(1, "naive"));
        progress.event(Event::CellStarted { engine: "engine-a", cell: &a, of: 2 });
        progress.event(Event::BuildStarted { engine: "engine-a", cell: &a, step: "baseline", build: 1, of: 4 });
        progress.event(Event::CellStarted { engine: "engine-b", cell: &b, of: 2 });
        progress.event(Event::BuildStarted { engine: "engine-b", cell: &b, step: "baseline", build: 2, of: 4 });
        let mut done = crate::results::record_with("layered", "go-edit", "baseline", 2.0, &[], 5);
        done.builder = Builder::Buildkit;
        progress.event(Event::BuildFinished { record: &done });
        progress.event(Event::BuildStarted { engine: "engine-a", cell: &a, step: "edit main.go", build: 3, of: 4 });
        progress.event(Event::Warning { message: "a cleanup was refused".into() });
        std::thread::sleep(Duration::from_millis(600));
        let screen = term.contents();
        let lines: Vec<&str> = screen.lines().collect();
        let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in\n{screen}"));
        assert!(at("engine-a: cell 1/2: layered × go-edit") < at("engine-b: cell 2/2: naive × go-edit"));
        assert!(lines[at("engine-a:   build 1/4 => baseline: ok in 2.0 s, 5 proxy requests")].starts_with("engine-a:"), "the finished build is named by its cell's engine\n{screen}");
        let bar_a = at("cell 1/2: layered × go-edit · buildkit · rep 1 · edit main.go");
        let bar_b = at("cell 2/2: naive × go-edit · buildkit · rep 1 · baseline");
        let run = at("1/4 builds");
        assert!(lines[bar_a].contains("engine-a") && lines[bar_b].contains("engine-b"), "{screen}");
        assert!(at("warning: a cleanup was refused") < bar_a && bar_a < bar_b && bar_b < run, "log lines above the engines' bars, the run's last\n{screen}");
        assert!(lines[run].contains("left"), "{screen}");
        progress.finish();
        assert!(!term.contents().contains("builds"), "the bars are cleared at the end\n{}", term.contents());
    }
}
