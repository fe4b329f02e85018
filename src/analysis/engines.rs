//! Where engines differ: for every cell step built on two or more engines, the build's outcome and each Dockerfile step's cache outcome and miss reason side by side, and the claim verdicts computed from each engine's builds alone (pure functions over results).

use serde::Serialize;

use crate::analysis::verdicts::{verdicts, Verdict};
use crate::results::{BuildRecord, LayerRecord, Results};

/// The builds one engine made, as one side of a comparison.
#[derive(Debug, Clone)]
pub struct EngineBuilds<'a> {
    /// What tables call it: the engine's name, or `name (second file)` when two files name one engine.
    pub label: String,
    /// The engine's name: sides with one name are never compared with each other.
    pub engine: String,
    pub records: Vec<&'a BuildRecord>,
}

/// An engine as a table's column: its label and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineColumn {
    pub label: String,
    /// `Docker 26.1.5 (API 1.45)`.
    pub version: String,
}

/// One thing two engines recorded differently in one cell step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `outcome`, or the Dockerfile step: `` `RUN go mod download` (line 5) ``.
    pub what: String,
    /// What each side recorded, in the sides' order: `ok`, `failed: …`, `no build`, `cached`, `executed`,
    /// `executed (files: main.go (content))`, `not reported`.
    pub values: Vec<String>,
}

/// A cell step (one build of a cell: template × scenario · builder · repetition · network, and its step) whose
/// records differ between engines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellStepDifference {
    /// `variant × scenario · builder · rep N · network`.
    pub cell: String,
    pub step: String,
    pub differences: Vec<Difference>,
}

/// A claim whose verdict differs between engines (each computed from that engine's builds alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictDifference {
    pub claim: String,
    /// Each engine's verdict, in the columns' order.
    pub verdicts: Vec<Verdict>,
}

/// Everything that differs between the engines of a results file (or of two files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineDifferences {
    pub engines: Vec<EngineColumn>,
    /// The cell steps built on two or more engines: those compared.
    pub cell_steps: usize,
    pub steps: Vec<CellStepDifference>,
    pub verdicts: Vec<VerdictDifference>,
}

impl EngineDifferences {
    /// Nothing differs: no cell step and no verdict.
    pub fn none_differ(&self) -> bool {
        self.steps.is_empty() && self.verdicts.is_empty()
    }

    /// The line that says so: `no cell step differs across 2 engines (old, modern) and 12 cell steps, nor any verdict`.
    pub fn agreement(&self) -> String {
        let names: Vec<&str> = self.engines.iter().map(|e| e.label.as_str()).collect();
        format!(
            "no cell step differs across {} engines ({}) and {} cell step{}{}",
            self.engines.len(),
            names.join(", "),
            self.cell_steps,
            if self.cell_steps == 1 { "" } else { "s" },
            if self.verdicts.is_empty() { ", nor any verdict" } else { "" }
        )
    }
}

/// A record's cell, as every file names it whatever its plan: `variant × scenario · builder · rep N · network`.
pub fn cell_name(r: &BuildRecord) -> String {
    format!("{} × {} · {} · rep {} · {}", r.variant, r.scenario, r.builder.name(), r.repetition, r.network)
}

/// The differences between the engines of one results file: `None` unless a cell was built on two or more engines
/// (a matrix run). Verdict differences come from [`verdicts`] over each engine's builds alone.
pub fn engine_differences(results: &Results) -> Option<EngineDifferences> {
    if !results.is_matrix() {
        return None;
    }
    let names = results.record_engines();
    let sides: Vec<EngineBuilds> = names
        .iter()
        .map(|name| EngineBuilds { label: shown_name(name), engine: name.clone(), records: results.records.iter().filter(|r| &r.engine == name).collect() })
        .collect();
    let (cell_steps, steps) = cell_step_differences(&sides);
    let engines = names
        .iter()
        .map(|name| EngineColumn {
            label: shown_name(name),
            version: results.records.iter().find(|r| &r.engine == name).map(|r| results.engine_version_of(r).to_string()).unwrap_or_default(),
        })
        .collect();
    let per_engine: Vec<Vec<crate::analysis::verdicts::ClaimVerdict>> = names.iter().map(|name| verdicts(&results.of_engine(name))).collect();
    Some(EngineDifferences { engines, cell_steps, steps, verdicts: verdict_differences(&per_engine) })
}

/// The builds a report's tables, charts and verdicts describe: a matrix's first engine's (the engines section
/// compares the others with it), else every build. `None` when that is every build: use the results as they are.
pub fn reported_builds(results: &Results) -> Option<Results> {
    if !results.is_matrix() {
        return None;
    }
    results.record_engines().first().map(|first| results.of_engine(first))
}

/// An engine's name as tables show it (`default` for records that name none, from files before records named one).
pub fn shown_name(name: &str) -> String {
    if name.is_empty() { "default".to_string() } else { name.to_string() }
}

/// The claims whose verdict is not the same on every engine, in claim order.
pub fn verdict_differences(per_engine: &[Vec<crate::analysis::verdicts::ClaimVerdict>]) -> Vec<VerdictDifference> {
    let Some(first) = per_engine.first() else { return Vec::new() };
    first
        .iter()
        .filter_map(|v| {
            let all: Vec<Verdict> = per_engine.iter().map(|vs| vs.iter().find(|o| o.id == v.id).map_or(Verdict::NotMeasured, |o| o.verdict)).collect();
            all.iter().any(|x| *x != v.verdict).then(|| VerdictDifference { claim: v.id.clone(), verdicts: all })
        })
        .collect()
}

/// Compares the sides' records of every cell step that two or more sides of different engines built: the build's
/// outcome, then (where every such side built it) each Dockerfile step's cache outcome and miss reason. Returns how
/// many cell steps were compared and those that differ, in the order the sides first name them.
pub fn cell_step_differences(sides: &[EngineBuilds<'_>]) -> (usize, Vec<CellStepDifference>) {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in sides.iter().flat_map(|s| s.records.iter()) {
        let key = (cell_name(r), r.step.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut compared = 0;
    let mut out = Vec::new();
    for (cell, step) in keys {
        // The sides that built the cell at all; a step one of them lacks is `no build` there (its cell ended early).
        let present: Vec<usize> = (0..sides.len()).filter(|&i| sides[i].records.iter().any(|r| cell_name(r) == cell)).collect();
        let engines_differ = |idx: &[usize]| idx.iter().any(|&i| sides[i].engine != sides[idx[0]].engine);
        if present.len() < 2 || !engines_differ(&present) {
            continue;
        }
        compared += 1;
        let record = |i: usize| sides[i].records.iter().copied().find(|r| cell_name(r) == cell && r.step == step);
        let mut differences = Vec::new();
        let outcomes: Vec<String> = (0..sides.len())
            .map(|i| match (present.contains(&i), record(i)) {
                (false, _) => "-".to_string(),
                (true, None) => "no build".to_string(),
                (true, Some(r)) => outcome_text(r),
            })
            .collect();
        if differs(sides, &present, &outcomes) {
            differences.push(Difference { what: "outcome".to_string(), values: outcomes });
        } else if present.iter().all(|&i| record(i).is_some_and(|r| r.outcome.is_ok())) {
            let mut steps: Vec<(String, Option<usize>, String)> = Vec::new();
            for &i in &present {
                for l in record(i).map(|r| r.layers.as_slice()).unwrap_or_default().iter().filter(|l| !l.is_base_image()) {
                    let key = layer_key(l);
                    if !steps.contains(&key) {
                        steps.push(key);
                    }
                }
            }
            for key in steps {
                let values: Vec<String> = (0..sides.len())
                    .map(|i| match record(i).filter(|_| present.contains(&i)) {
                        None => "-".to_string(),
                        Some(r) => r.layers.iter().find(|l| layer_key(l) == key).map_or_else(|| "not reported".to_string(), layer_text),
                    })
                    .collect();
                if differs(sides, &present, &values) {
                    let what = match key.1 {
                        Some(n) => format!("`{}` (line {n})", key.2),
                        None => format!("`{}`", key.2),
                    };
                    differences.push(Difference { what, values });
                }
            }
        }
        if !differences.is_empty() {
            out.push(CellStepDifference { cell, step, differences });
        }
    }
    (compared, out)
}

/// Two sides of different engines recorded different values.
fn differs(sides: &[EngineBuilds<'_>], present: &[usize], values: &[String]) -> bool {
    present.iter().any(|&i| present.iter().any(|&j| sides[i].engine != sides[j].engine && values[i] != values[j]))
}

fn layer_key(l: &LayerRecord) -> (String, Option<usize>, String) {
    (l.stage.clone(), l.line, l.instruction.clone())
}

fn outcome_text(r: &BuildRecord) -> String {
    match &r.error {
        Some(e) if !r.outcome.is_ok() => format!("{}: {}", r.outcome, e.split_whitespace().collect::<Vec<_>>().join(" ")),
        _ => r.outcome.to_string(),
    }
}

/// `cached`, `executed`, or `executed (files: main.go (content))`.
fn layer_text(l: &LayerRecord) -> String {
    match (&l.miss_reason, l.cached) {
        (_, true) => "cached".to_string(),
        (Some(m), false) => format!("executed ({})", m.short()),
        (None, false) => "executed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::verdicts::ClaimVerdict;
    use crate::results::{record_with, results_with, MissKind, MissReason};

    fn on(engine: &str, step: &str, download_cached: bool) -> BuildRecord {
        let mut r = record_with("naive", "edit-go-source", step, 1.0, &[("COPY go.mod go.sum ./", true, 0.0), ("RUN go mod download", download_cached, 1.0)], 0);
        r.engine = engine.into();
        r.cell = Some(0);
        r.layers[1].line = Some(5);
        if !download_cached {
            r.layers[1].miss_reason = Some(MissReason { kind: MissKind::Files, detail: "go.sum (content)".into(), line: Some(4) });
        }
        r
    }

    fn matrix(records: Vec<BuildRecord>) -> Results {
        let mut results = results_with(records);
        results.options.matrix = true;
        results
    }

    #[test]
    fn the_same_outcomes_on_two_engines_differ_nowhere_and_say_across_how_much() {
        let results = matrix(vec![on("old", "baseline", false), on("old", "edit", true), on("modern", "baseline", false), on("modern", "edit", true)]);
        let d = engine_differences(&results).unwrap();
        assert!(d.none_differ(), "{d:?}");
        assert_eq!(d.cell_steps, 2);
        assert_eq!(d.agreement(), "no cell step differs across 2 engines (old, modern) and 2 cell steps, nor any verdict");
    }

    #[test]
    fn a_step_cached_on_one_engine_and_executed_on_the_other_is_named_with_its_miss_reason() {
        let results = matrix(vec![on("old", "baseline", false), on("old", "edit", true), on("modern", "baseline", false), on("modern", "edit", false)]);
        let d = engine_differences(&results).unwrap();
        assert_eq!(d.steps.len(), 1, "{d:?}");
        assert_eq!((d.steps[0].cell.as_str(), d.steps[0].step.as_str()), ("naive × edit-go-source · buildkit · rep 1 · loopback", "edit"));
        assert_eq!(d.steps[0].differences, [Difference { what: "`RUN go mod download` (line 5)".into(), values: vec!["cached".into(), "executed (files: go.sum (content))".into()] }]);
        assert_eq!(d.engines.iter().map(|e| e.version.as_str()).collect::<Vec<_>>(), ["Docker 20.10 (API 1.41)"; 2], "older records take the run's version");
    }

    #[test]
    fn a_build_that_fails_on_one_engine_differs_in_its_outcome_and_its_later_steps_are_no_build() {
        let mut failed = on("modern", "baseline", false);
        failed.outcome = crate::results::Outcome::Failed;
        failed.error = Some("at `RUN go mod download`:\n exit 1".into());
        let results = matrix(vec![on("old", "baseline", false), on("old", "edit", true), failed]);
        let d = engine_differences(&results).unwrap();
        let outcomes: Vec<(&str, &Vec<String>)> = d.steps.iter().map(|s| (s.step.as_str(), &s.differences[0].values)).collect();
        assert_eq!(outcomes, [("baseline", &vec!["ok".to_string(), "failed: at `RUN go mod download`: exit 1".to_string()]), ("edit", &vec!["ok".to_string(), "no build".to_string()])]);
    }

    #[test]
    fn a_run_that_shared_its_cells_out_has_nothing_to_compare() {
        let mut b = on("modern", "baseline", false);
        b.variant = "other".into();
        b.cell = Some(1);
        assert!(engine_differences(&results_with(vec![on("old", "baseline", false), b])).is_none());
    }

    #[test]
    fn sides_of_one_engine_are_not_compared_with_each_other() {
        let (a, b) = (on("old", "edit", true), on("old", "edit", false));
        let sides = [
            EngineBuilds { label: "old".into(), engine: "old".into(), records: vec![&a] },
            EngineBuilds { label: "old (second file)".into(), engine: "old".into(), records: vec![&b] },
        ];
        assert_eq!(cell_step_differences(&sides), (0, vec![]));
    }

    #[test]
    fn verdicts_that_differ_between_engines_are_listed_in_claim_order() {
        let v = |id: &str, verdict| ClaimVerdict { id: id.into(), verdict, evidence: String::new() };
        let old = vec![v("C1", Verdict::Confirmed), v("C2", Verdict::Refuted)];
        let modern = vec![v("C1", Verdict::Confirmed), v("C2", Verdict::Confirmed)];
        assert_eq!(verdict_differences(&[old, modern]), [VerdictDifference { claim: "C2".into(), verdicts: vec![Verdict::Refuted, Verdict::Confirmed] }]);
    }
}
