//! The data behind each chart, taken from a results file: what to draw, already summarised, so drawing computes nothing.

use crate::analysis::stats::wall_seconds;
use crate::results::Builder;
use crate::results::{BuildRecord, BuildStart, LayerRecord, Results};

/// One chart: the file it goes to, its title, a sentence for readers who cannot see it, and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File name without extension (`rebuild-times`, `cache-map-edit-go-source`, …).
    pub stem: String,
    pub title: String,
    pub alt: String,
    pub figure: Figure,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    RebuildTimes(Vec<BarGroup>),
    CacheMap(Vec<CacheRow>),
    TimeSplit(Vec<StackedBar>),
    ImageSizes(Vec<SizeBar>),
    Timeline(Timeline),
}

/// Bars under one heading: one scenario step, one bar per variant.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub heading: String,
    pub bars: Vec<TimeBar>,
}

/// The wall time of a build over its repetitions, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeBar {
    pub label: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// One build's Dockerfile steps in order, each a hit or a miss.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow {
    pub label: String,
    pub cells: Vec<CacheCell>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheCell {
    pub text: String,
    pub outcome: CellOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellOutcome {
    /// Reused from the cache.
    Hit,
    /// Executed.
    Miss,
    /// A `FROM`: resolving a base image, not a cached step.
    Base,
    /// Hit in some repetitions and missed in others.
    Varies,
}

/// Where a build's time went, per phase, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct StackedBar {
    pub label: String,
    pub segments: Vec<(Phase, f64)>,
    /// The build's wall time, measured around the whole build call.
    pub wall: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From the build call to the first step: sending the context, reading the Dockerfile.
    Setup,
    /// `RUN` steps that fetch modules.
    Download,
    /// `RUN` steps that compile, vet or install.
    Compile,
    /// `COPY` and `ADD`.
    Copy,
    /// Every other step (`FROM`, `WORKDIR`, `USER`, other `RUN`s).
    Other,
    /// From the last step to the end of the call: exporting the image and naming it.
    Export,
}

impl Phase {
    pub const ALL: [Phase; 6] = [Phase::Setup, Phase::Download, Phase::Compile, Phase::Copy, Phase::Other, Phase::Export];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Download => "download",
            Phase::Compile => "build",
            Phase::Copy => "copy",
            Phase::Other => "other steps",
            Phase::Export => "export",
        }
    }

    pub fn of(instruction: &str) -> Phase {
        let upper = instruction.trim_start().to_ascii_uppercase();
        if upper.starts_with("COPY ") || upper.starts_with("ADD ") {
            Phase::Copy
        } else if upper.starts_with("RUN ") {
            if instruction.contains("go mod download") || instruction.contains("go get ") {
                Phase::Download
            } else if ["go build", "go install", "go vet", "go test"].iter().any(|c| instruction.contains(c)) {
                Phase::Compile
            } else {
                Phase::Other
            }
        } else {
            Phase::Other
        }
    }
}

/// An image's size and what its binary is.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeBar {
    pub variant: String,
    pub bytes: u64,
    /// `static`, `dynamic`, or `None` when the image was not inspected.
    pub linkage: Option<String>,
    /// The uid the process ran as, when the runtime check ran.
    pub uid: Option<u32>,
    /// The image's `Config.User` (empty means root).
    pub user: String,
}

impl SizeBar {
    /// `static binary · non-root (uid 65532)` and the like.
    pub fn marks(&self) -> String {
        let linkage = match self.linkage.as_deref() {
            Some(l) => format!("{l} binary"),
            None => "binary not inspected".to_string(),
        };
        let user = match (self.uid, self.user.as_str()) {
            (Some(0), _) => "root (uid 0)".to_string(),
            (Some(uid), _) => format!("non-root (uid {uid})"),
            (None, "") => "root (no USER)".to_string(),
            (None, u) => format!("non-root (USER {u})"),
        };
        format!("{linkage} · {user}")
    }

    pub fn is_static(&self) -> bool {
        self.linkage.as_deref() == Some("static")
    }
}

/// The steps of one build on a time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub spans: Vec<Span>,
    /// Seconds.
    pub wall: f64,
}

/// One step, in seconds after the build started.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub stage: String,
    pub instruction: String,
    pub start: f64,
    pub end: f64,
    pub cached: bool,
    /// A `FROM` line: the base image, neither a hit nor a miss.
    pub base: bool,
}

/// Every chart the results support, in the order the report shows them.
pub fn charts(results: &Results) -> Vec<Chart> {
    let mut charts = Vec::new();
    let groups = rebuild_groups(results);
    if !groups.is_empty() {
        charts.push(Chart {
            stem: "rebuild-times".into(),
            title: "Rebuild time after each change".into(),
            alt: "Horizontal bars: for each scenario step, the median wall time of the rebuild per variant, with whiskers from the fastest to the slowest repetition.".into(),
            figure: Figure::RebuildTimes(groups),
        });
    }
    for scenario in scenarios(results) {
        let rows = cache_rows(results, &scenario);
        if !rows.is_empty() {
            charts.push(Chart {
                stem: format!("cache-map-{scenario}"),
                title: format!("Cache map: {scenario}"),
                alt: format!("For each variant, its Dockerfile steps in order after the {scenario} change, each marked as a cache hit or as executed."),
                figure: Figure::CacheMap(rows),
            });
        }
    }
    if let Some((scenario, step, bars)) = time_split(results) {
        charts.push(Chart {
            stem: "time-split".into(),
            title: format!("Where the time goes: cold build vs {step} ({scenario})"),
            alt: format!("Stacked bars per variant: seconds spent in setup, download, build, copy, other steps and export, for the cold baseline and for the {step} rebuild of {scenario}."),
            figure: Figure::TimeSplit(bars),
        });
    }
    let sizes = image_sizes(results);
    if !sizes.is_empty() {
        charts.push(Chart {
            stem: "image-sizes".into(),
            title: "Image size per variant".into(),
            alt: "Horizontal bars on a logarithmic scale: each variant's image size in MB, marked with its binary's linkage and the user its process runs as.".into(),
            figure: Figure::ImageSizes(sizes),
        });
    }
    if let Some((record, timeline)) = timeline(results) {
        charts.push(Chart {
            stem: "timeline".into(),
            title: format!("Timeline of a cold BuildKit build: {} ({})", record.variant, record.scenario),
            alt: format!("Gantt chart: each Dockerfile step of the cold {} build as a bar from its start to its end, grouped by stage, so stages that ran in parallel overlap.", record.variant),
            figure: Figure::Timeline(timeline),
        });
    }
    charts
}

/// The row label of a cell: its variant, plus its builder and network when they are not the defaults.
pub fn cell_label(r: &BuildRecord) -> String {
    let mut label = r.variant.clone();
    if r.builder != Builder::Buildkit {
        label.push_str(&format!(" · {}", r.builder.name()));
    }
    if r.network != "loopback" {
        label.push_str(&format!(" · {}", r.network));
    }
    label
}

/// Scenarios in the order the results first mention them.
pub fn scenarios(results: &Results) -> Vec<String> {
    first_seen(results.records.iter().map(|r| r.scenario.clone()))
}

/// The scenario's steps (baseline first), in record order.
pub fn steps_of(results: &Results, scenario: &str) -> Vec<String> {
    first_seen(results.records.iter().filter(|r| r.scenario == scenario).map(|r| r.step.clone()))
}

/// A cell of a scenario: records that differ only by repetition.
pub fn same_cell(a: &BuildRecord, b: &BuildRecord) -> bool {
    a.variant == b.variant && a.scenario == b.scenario && a.builder == b.builder && a.network == b.network
}

/// One representative record per cell of the scenario step (the first repetition), in record order.
pub fn cells_of<'a>(results: &'a Results, scenario: &str, step: &str) -> Vec<&'a BuildRecord> {
    let mut cells: Vec<&BuildRecord> = Vec::new();
    for r in results.records.iter().filter(|r| r.scenario == scenario && r.step == step) {
        if !cells.iter().any(|c| same_cell(c, r)) {
            cells.push(r);
        }
    }
    cells
}

/// Every record of the same cell and step as `r` (its repetitions).
pub fn repetitions<'a>(results: &'a Results, r: &BuildRecord) -> Vec<&'a BuildRecord> {
    results.records.iter().filter(|o| same_cell(o, r) && o.step == r.step).collect()
}

fn first_seen(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen
}

fn rebuild_groups(results: &Results) -> Vec<BarGroup> {
    let mut groups = Vec::new();
    for scenario in scenarios(results) {
        for step in steps_of(results, &scenario).into_iter().filter(|s| s != "baseline") {
            let bars: Vec<TimeBar> = cells_of(results, &scenario, &step)
                .into_iter()
                .filter_map(|r| {
                    let s = wall_seconds(&repetitions(results, r))?;
                    Some(TimeBar { label: cell_label(r), median: s.median, min: s.min, max: s.max, n: s.n })
                })
                .collect();
            if !bars.is_empty() {
                groups.push(BarGroup { heading: format!("{scenario}: {step}"), bars });
            }
        }
    }
    groups
}

fn cache_rows(results: &Results, scenario: &str) -> Vec<CacheRow> {
    let mut rows = Vec::new();
    for step in steps_of(results, scenario).into_iter().filter(|s| s != "baseline") {
        for r in cells_of(results, scenario, &step) {
            let reps: Vec<&BuildRecord> = repetitions(results, r).into_iter().filter(|o| o.outcome.is_ok()).collect();
            let Some(first) = reps.first() else { continue };
            let cells = first
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let outcome = if l.is_base_image() {
                        CellOutcome::Base
                    } else if reps.iter().any(|o| o.layers.get(i).map(|x| x.cached) != Some(l.cached)) {
                        CellOutcome::Varies
                    } else if l.cached {
                        CellOutcome::Hit
                    } else {
                        CellOutcome::Miss
                    };
                    CacheCell { text: short_instruction(&l.instruction), outcome }
                })
                .collect();
            rows.push(CacheRow { label: format!("{} · {step}", cell_label(r)), cells });
        }
    }
    rows
}

/// An instruction cut to fit a cache-map cell.
pub fn short_instruction(instruction: &str) -> String {
    shorten(instruction, 30)
}

/// The text with its whitespace collapsed to single spaces, cut to `max` characters with an ellipsis (see [`cut`]).
pub fn shorten(text: &str, max: usize) -> String {
    cut(&text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// `text` on one line (a heredoc's instruction spans several), cut to `max` characters with an ellipsis; its other
/// spacing kept, so a table line keeps its alignment.
pub fn cut(text: &str, max: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= max {
        line
    } else {
        format!("{}…", line.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// The scenario and step of the time split: `edit-go-source` when measured, else the first scenario with a rebuild.
fn time_split(results: &Results) -> Option<(String, String, Vec<StackedBar>)> {
    let mut candidates = scenarios(results);
    if let Some(i) = candidates.iter().position(|s| s == "edit-go-source") {
        let s = candidates.remove(i);
        candidates.insert(0, s);
    }
    for scenario in candidates {
        let Some(step) = steps_of(results, &scenario).into_iter().find(|s| s != "baseline") else { continue };
        let mut cells: Vec<&BuildRecord> = cells_of(results, &scenario, &step)
            .into_iter()
            .filter(|r| r.builder == Builder::Buildkit && r.network == "loopback")
            .collect();
        if cells.is_empty() {
            cells = cells_of(results, &scenario, &step);
        }
        let mut bars = Vec::new();
        for cell in cells {
            let Some(rebuild) = median_build(&repetitions(results, cell)) else { continue };
            let baseline = results
                .records
                .iter()
                .find(|b| same_cell(b, rebuild) && b.step == "baseline" && b.repetition == rebuild.repetition && b.outcome.is_ok());
            if let Some(b) = baseline {
                bars.push(stacked(format!("{} · cold", cell_label(b)), b));
            }
            bars.push(stacked(format!("{} · {step}", cell_label(rebuild)), rebuild));
        }
        if !bars.is_empty() {
            return Some((scenario, step, bars));
        }
    }
    None
}

/// The successful repetition whose wall time is the median (the lower one of an even count).
fn median_build<'a>(records: &[&'a BuildRecord]) -> Option<&'a BuildRecord> {
    let mut ok: Vec<&BuildRecord> = records.iter().copied().filter(|r| r.outcome.is_ok()).collect();
    ok.sort_by(|a, b| a.wall_ms.total_cmp(&b.wall_ms).then(a.repetition.cmp(&b.repetition)));
    ok.get(ok.len().saturating_sub(1) / 2).copied()
}

fn stacked(label: String, r: &BuildRecord) -> StackedBar {
    let wall = r.wall_ms / 1000.0;
    let first_start = r.layers.iter().filter_map(|l| l.start_ms).fold(f64::INFINITY, f64::min);
    let last_end = r.layers.iter().filter_map(|l| l.end_ms).fold(f64::NEG_INFINITY, f64::max);
    let mut segments: Vec<(Phase, f64)> = Phase::ALL.iter().map(|p| (*p, 0.0)).collect();
    let mut add = |phase: Phase, seconds: f64| {
        if let Some(s) = segments.iter_mut().find(|(p, _)| *p == phase) {
            s.1 += seconds.max(0.0);
        }
    };
    if first_start.is_finite() {
        add(Phase::Setup, first_start / 1000.0);
    }
    for l in &r.layers {
        add(Phase::of(&l.instruction), l.duration_ms / 1000.0);
    }
    if last_end.is_finite() {
        add(Phase::Export, wall - last_end / 1000.0);
    }
    StackedBar { label, segments, wall }
}

fn image_sizes(results: &Results) -> Vec<SizeBar> {
    let mut bars: Vec<SizeBar> = Vec::new();
    let ok_images = results.records.iter().filter(|r| r.outcome.is_ok() && r.image.is_some());
    // BuildKit baselines first: the image each variant produces from the unchanged app.
    let (mut preferred, others): (Vec<&BuildRecord>, Vec<&BuildRecord>) = ok_images.partition(|r| r.step == "baseline" && r.builder == Builder::Buildkit);
    preferred.extend(others);
    for r in preferred {
        if bars.iter().any(|b| b.variant == r.variant) {
            continue;
        }
        let Some(image) = &r.image else { continue };
        let inspection = r.inspection.as_ref();
        bars.push(SizeBar {
            variant: r.variant.clone(),
            bytes: image.size_bytes,
            linkage: inspection.and_then(|i| i.binary.as_ref()).map(|b| b.linkage.clone()),
            uid: inspection.and_then(|i| i.runtime.as_ref()).and_then(|rt| rt.uid),
            user: image.user.clone(),
        });
    }
    bars.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.variant.cmp(&b.variant)));
    bars
}

/// The cold BuildKit build of X5's variant when the results have one (the stages it runs at once are what the chart
/// shows), else the one with the most stages; the first such in the file.
fn timeline(results: &Results) -> Option<(&BuildRecord, Timeline)> {
    let key = |r: &BuildRecord| (r.variant == crate::analysis::verdicts::STAGES_VARIANT, first_seen(r.layers.iter().map(|l| l.stage.clone())).len());
    let mut best: Option<&BuildRecord> = None;
    for r in results.records.iter().filter(|r| {
        r.outcome.is_ok() && r.builder == Builder::Buildkit && r.cache_state == BuildStart::Cold && r.layers.iter().all(|l| l.start_ms.is_some() && l.end_ms.is_some())
    }) {
        if best.is_none_or(|b| key(r) > key(b)) {
            best = Some(r);
        }
    }
    let r = best?;
    let spans = r.layers.iter().map(span).collect();
    Some((r, Timeline { spans, wall: r.wall_ms / 1000.0 }))
}

fn span(l: &LayerRecord) -> Span {
    Span {
        stage: l.stage.clone(),
        instruction: l.instruction.clone(),
        start: l.start_ms.unwrap_or(0.0) / 1000.0,
        end: l.end_ms.unwrap_or(0.0) / 1000.0,
        cached: l.cached,
        base: l.is_base_image(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{record_with, results_with};

    #[test]
    fn phases_follow_the_instruction() {
        assert_eq!(Phase::of("RUN go mod download"), Phase::Download);
        assert_eq!(Phase::of("RUN --mount=type=cache,target=/root/.cache/go-build CGO_ENABLED=0 go build -o /out/sample ."), Phase::Compile);
        assert_eq!(Phase::of("COPY --from=build /out/sample /sample"), Phase::Copy);
        assert_eq!(Phase::of("WORKDIR /src"), Phase::Other);
        assert_eq!(Phase::of("RUN apt-get update"), Phase::Other);
    }

    #[test]
    fn the_time_split_accounts_for_the_whole_wall_time_of_a_sequential_build() {
        // Steps run back to back from 0: setup is 0 s, export is wall - 3 s.
        let mut r = record_with("layered", "edit-go-source", "baseline", 4.0, &[("COPY . .", false, 1.0), ("RUN go build .", false, 2.0)], 0);
        r.layers[1].start_ms = Some(1000.0);
        r.layers[1].end_ms = Some(3000.0);
        let bar = stacked("x".into(), &r);
        let total: f64 = bar.segments.iter().map(|(_, s)| s).sum();
        assert!((total - 4.0).abs() < 1e-9, "{bar:?}");
        assert_eq!(bar.segments.iter().find(|(p, _)| *p == Phase::Export).map(|s| s.1), Some(1.0));
    }

    #[test]
    fn a_step_cached_in_only_some_repetitions_is_marked_as_varying() {
        let steps = |cached| [("FROM golang:1.23", false, 0.0), ("COPY . .", cached, 0.1)];
        let mut second = record_with("naive", "touch-only", "touch", 1.0, &steps(false), 0);
        second.repetition = 2;
        let results = results_with(vec![record_with("naive", "touch-only", "touch", 1.0, &steps(true), 0), second]);
        let rows = cache_rows(&results, "touch-only");
        assert_eq!(rows.len(), 1);
        let outcomes: Vec<CellOutcome> = rows[0].cells.iter().map(|c| c.outcome).collect();
        assert_eq!(outcomes, [CellOutcome::Base, CellOutcome::Varies]);
    }

    #[test]
    fn the_timeline_draws_the_x5_cell_over_a_build_with_as_many_stages() {
        let cold = |variant: &str, stages: &[&str]| {
            let mut r = record_with(variant, "no-change", "baseline", 3.0, &[("RUN a", false, 1.0), ("RUN b", false, 1.0), ("RUN c", false, 1.0)], 0);
            for (l, stage) in r.layers.iter_mut().zip(stages) {
                l.stage = stage.to_string();
            }
            r
        };
        let fetch = cold("fetch-latest", &["build", "tools", "final"]);
        let stages = cold(crate::analysis::verdicts::STAGES_VARIANT, &["build", "licenses", "final"]);
        let pick = |records: Vec<BuildRecord>| timeline(&results_with(records)).map(|(r, _)| r.variant.clone());
        assert_eq!(pick(vec![fetch.clone(), stages]).as_deref(), Some(crate::analysis::verdicts::STAGES_VARIANT));
        assert_eq!(pick(vec![cold("one", &["build", "build", "build"]), fetch]).as_deref(), Some("fetch-latest"), "else the most stages");
    }

    #[test]
    fn the_median_build_is_the_middle_repetition_by_wall_time() {
        let mut a = record_with("v", "s", "edit", 3.0, &[], 0);
        let mut b = a.clone();
        let mut c = a.clone();
        (a.repetition, b.repetition, c.repetition) = (1, 2, 3);
        (b.wall_ms, c.wall_ms) = (1000.0, 2000.0);
        assert_eq!(median_build(&[&a, &b, &c]).map(|r| r.repetition), Some(3));
    }
}
