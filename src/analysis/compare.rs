//! Comparison of two results files: per cell and step, the change in median wall time with its uncertainty, every change of cache outcome, every step that built before and no longer does, and every difference between two engines' builds of the same cell.

use serde::Serialize;

use crate::analysis::engines::{cell_name, cell_step_differences, shown_name, EngineBuilds, EngineColumn, EngineDifferences};
use crate::analysis::stats::{wall_seconds, Ratio, Summary};
use crate::results::{BuildRecord, Outcome, Results};

/// One cell step (variant × scenario · builder · network, step) seen in either file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepComparison {
    pub key: String,
    pub step: String,
    /// Median wall seconds in the first file and in the second (absent where that file lacks the step).
    pub before: Option<Summary>,
    pub after: Option<Summary>,
    /// after / before, with its interval.
    pub ratio: Option<Ratio>,
    /// Dockerfile steps whose cache outcome changed: `instruction: cached 3/3 -> 0/3`.
    pub cache_changes: Vec<String>,
    /// Why a step that built in the first file has no successful build in the second:
    /// its builds failed (with the first error) or it is missing from the second file.
    pub lost: Option<String>,
    /// Where two engines' builds of this cell step differ (their records in one file, a matrix's, or in the two):
    /// `rep 1 · `RUN go mod download` (line 5): cached on old, executed (files: go.sum (content)) on modern`.
    /// Not a regression: engines are compared, not runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine_differences: Vec<String>,
}

impl StepComparison {
    /// The step got significantly slower (never with fewer than 3 repetitions on a side: that is inconclusive), a step that was cached now misses, or a step that built no longer does.
    pub fn is_regression(&self) -> bool {
        self.lost.is_some() || self.ratio.as_ref().is_some_and(|r| r.significant() && r.value > 1.0) || self.cache_changes.iter().any(|c| c.contains("-> fewer hits"))
    }
}

fn key(r: &BuildRecord) -> (String, String) {
    (
        format!("{} × {} · {} · {}", r.variant, r.scenario, r.builder.name(), r.network),
        r.step.clone(),
    )
}

/// How records are paired: by cell step, and when a file is a matrix, by engine too for the engines both files
/// name (`… · loopback on old`), so a matrix's engines are never pooled as repetitions.
struct Pairing {
    split: Vec<String>,
}

impl Pairing {
    fn of(before: &Results, after: &Results) -> Pairing {
        let split = if before.is_matrix() || after.is_matrix() {
            let theirs = after.record_engines();
            before.record_engines().into_iter().filter(|e| theirs.contains(e)).collect()
        } else {
            Vec::new()
        };
        Pairing { split }
    }

    fn key(&self, r: &BuildRecord) -> (String, String) {
        let (k, step) = key(r);
        if self.split.contains(&r.engine) {
            (format!("{k} on {}", shown_name(&r.engine)), step)
        } else {
            (k, step)
        }
    }
}

/// How often each Dockerfile step was cached over the repetitions: (instruction, cached, of).
fn cache_counts(records: &[&BuildRecord]) -> Vec<(String, usize, usize)> {
    let mut out: Vec<(String, usize, usize)> = Vec::new();
    for r in records {
        for l in r.layers.iter().filter(|l| !l.is_base_image()) {
            match out.iter_mut().find(|(i, _, _)| *i == l.instruction) {
                Some(entry) => {
                    entry.1 += usize::from(l.cached);
                    entry.2 += 1;
                }
                None => out.push((l.instruction.clone(), usize::from(l.cached), 1)),
            }
        }
    }
    out
}

fn pick<'a>(results: &'a Results, pairing: &Pairing, wanted: &(String, String)) -> Vec<&'a BuildRecord> {
    results.records.iter().filter(|r| r.outcome.is_ok() && pairing.key(r) == *wanted).collect()
}

/// Why a cell step with successful builds in the first file has none in `after`: what its records there say, or that it has none.
fn lost_in(after: &Results, pairing: &Pairing, wanted: &(String, String)) -> String {
    let records: Vec<&BuildRecord> = after.records.iter().filter(|r| pairing.key(r) == *wanted).collect();
    let Some(first) = records.first() else {
        return "missing from the second file".to_string();
    };
    let builds = if records.len() == 1 { "its build".to_string() } else { format!("all {} builds", records.len()) };
    let outcome = if first.outcome == Outcome::Failed { "failed".to_string() } else { format!("ended `{}`", first.outcome) };
    match records.iter().find_map(|r| r.error.as_deref()) {
        Some(error) => format!("{builds} {outcome} in the second file: {error}"),
        None => format!("{builds} {outcome} in the second file (no error recorded)"),
    }
}

/// Compares every cell step with a successful build in either file; times and cache outcomes come from successful builds only,
/// and a step with successful builds in `before` but none in `after` is `lost`.
///
/// When a file is a matrix, its builds are paired engine by engine for the engines both files name. Where two
/// engines' builds of one cell step differ (within a matrix file, or across the files when their records of a cell
/// come from different engines), each difference is named in [`StepComparison::engine_differences`].
pub fn compare(before: &Results, after: &Results) -> Vec<StepComparison> {
    let pairing = Pairing::of(before, after);
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in before.records.iter().chain(after.records.iter()).filter(|r| r.outcome.is_ok()) {
        let k = pairing.key(r);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut steps: Vec<StepComparison> = keys
        .into_iter()
        .map(|(k, step)| {
            let wanted = (k.clone(), step.clone());
            let a = pick(before, &pairing, &wanted);
            let b = pick(after, &pairing, &wanted);
            let (sa, sb) = (wall_seconds(&a), wall_seconds(&b));
            let lost = (!a.is_empty() && b.is_empty()).then(|| lost_in(after, &pairing, &wanted));
            let ratio = match (&sa, &sb) {
                (Some(x), Some(y)) => Ratio::of(y, x),
                _ => None,
            };
            let (ca, cb) = (cache_counts(&a), cache_counts(&b));
            let mut cache_changes = Vec::new();
            if !a.is_empty() && !b.is_empty() {
                for (instruction, hits_a, of_a) in &ca {
                    let (hits_b, of_b) = cb.iter().find(|(i, _, _)| i == instruction).map_or((0, 0), |(_, h, o)| (*h, *o));
                    if of_b == 0 {
                        cache_changes.push(format!("{instruction}: no longer reported"));
                        continue;
                    }
                    let (fa, fb) = (*hits_a as f64 / *of_a as f64, hits_b as f64 / of_b as f64);
                    if (fa - fb).abs() > f64::EPSILON {
                        let direction = if fb < fa { "fewer hits" } else { "more hits" };
                        cache_changes.push(format!("{instruction}: cached {hits_a}/{of_a} -> {hits_b}/{of_b} (-> {direction})"));
                    }
                }
                for (instruction, hits_b, of_b) in &cb {
                    if !ca.iter().any(|(i, _, _)| i == instruction) {
                        cache_changes.push(format!("{instruction}: new step, cached {hits_b}/{of_b}"));
                    }
                }
            }
            StepComparison {
                key: k,
                step,
                before: sa,
                after: sb,
                ratio,
                cache_changes,
                lost,
                engine_differences: Vec::new(),
            }
        })
        .collect();
    if let Some(d) = engine_differences(before, after) {
        // Each difference goes to its cell step's row (the first, when the engines split it); a cell step no row has
        // (its builds failed everywhere) gets a row of its own.
        let base_key = |cell: &str, step: &str| {
            before.records.iter().chain(&after.records).find(|r| cell_name(r) == cell && r.step == step).map(|r| key(r).0).unwrap_or_default()
        };
        for s in &d.steps {
            let base = base_key(&s.cell, &s.step);
            let rep = s.cell.split(" · ").find(|p| p.starts_with("rep ")).unwrap_or("rep ?").to_string();
            let lines = s.differences.iter().map(|diff| {
                let on: Vec<String> = diff.values.iter().zip(&d.engines).filter(|(v, _)| v.as_str() != "-").map(|(v, e)| format!("{v} on {}", e.label)).collect();
                format!("{rep} · {}: {}", diff.what, on.join(", "))
            });
            match steps.iter_mut().find(|c| c.step == s.step && (c.key == base || c.key.starts_with(&format!("{base} on ")))) {
                Some(row) => row.engine_differences.extend(lines),
                None => steps.push(StepComparison {
                    key: base,
                    step: s.step.clone(),
                    before: None,
                    after: None,
                    ratio: None,
                    cache_changes: Vec::new(),
                    lost: None,
                    engine_differences: lines.collect(),
                }),
            }
        }
    }
    steps
}

/// The differences between engines' builds of the same cell in two files: every engine of each file is a side
/// (`old (first file)` when both files name it; sides of one engine are not compared with each other). `None` when
/// no cell was built on two engines.
pub fn engine_differences(before: &Results, after: &Results) -> Option<EngineDifferences> {
    let (names_a, names_b) = (before.record_engines(), after.record_engines());
    let mut sides: Vec<EngineBuilds> = Vec::new();
    let mut engines: Vec<EngineColumn> = Vec::new();
    for (results, names, other, which) in [(before, &names_a, &names_b, "first file"), (after, &names_b, &names_a, "second file")] {
        for name in names {
            let shown = shown_name(name);
            let label = if other.iter().any(|o| shown_name(o) == shown) { format!("{shown} ({which})") } else { shown.clone() };
            let records: Vec<&BuildRecord> = results.records.iter().filter(|r| &r.engine == name).collect();
            let version = records.first().map(|r| results.engine_version_of(r).to_string()).unwrap_or_default();
            engines.push(EngineColumn { label: label.clone(), version });
            sides.push(EngineBuilds { label, engine: shown, records });
        }
    }
    let (cell_steps, steps) = cell_step_differences(&sides);
    (cell_steps > 0).then_some(EngineDifferences { engines, cell_steps, steps, verdicts: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: &str, wall: f64, download_cached: bool) -> BuildRecord {
        crate::results::record_with("static-scratch", "edit-go-source", step, wall, &[("RUN go mod download", download_cached, 0.0)], 0)
    }

    #[test]
    fn a_slower_step_and_a_lost_cache_hit_are_regressions() {
        let before = crate::results::results_with([10.0, 10.2, 10.1, 10.3].iter().map(|t| rec("edit", *t, true)).collect());
        let after = crate::results::results_with([20.0, 20.4, 20.2, 20.3].iter().map(|t| rec("edit", *t, false)).collect());
        let c = compare(&before, &after);
        assert_eq!(c.len(), 1);
        let r = c[0].ratio.as_ref().unwrap();
        assert!(r.significant() && (r.value - 2.0).abs() < 0.05, "{r:?}");
        assert_eq!(c[0].cache_changes, vec!["RUN go mod download: cached 4/4 -> 0/4 (-> fewer hits)"]);
        assert!(c[0].is_regression());
    }

    #[test]
    fn the_same_results_compare_as_unchanged() {
        let a = crate::results::results_with(vec![rec("edit", 10.0, true), rec("edit", 11.0, true)]);
        let c = compare(&a, &a);
        assert!(c[0].cache_changes.is_empty());
        assert!(!c[0].is_regression());
        assert!(!c[0].ratio.as_ref().unwrap().significant());
    }

    fn failed(step: &str, error: &str) -> BuildRecord {
        BuildRecord {
            outcome: Outcome::Failed,
            error: Some(error.into()),
            layers: vec![],
            ..rec(step, 1.0, false)
        }
    }

    #[test]
    fn a_step_that_built_and_now_fails_is_a_regression_naming_the_error() {
        let before = crate::results::results_with(vec![rec("edit", 10.0, true), rec("edit", 10.2, true)]);
        let after = crate::results::results_with(vec![failed("edit", "RUN go build: exit code 1"), failed("edit", "RUN go build: exit code 2")]);
        let c = compare(&before, &after);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_regression());
        assert_eq!(c[0].lost.as_deref(), Some("all 2 builds failed in the second file: RUN go build: exit code 1"));
        assert!(c[0].after.is_none() && c[0].ratio.is_none());
    }

    #[test]
    fn a_step_that_built_and_is_missing_from_the_second_file_is_a_regression() {
        let before = crate::results::results_with(vec![rec("baseline", 30.0, false), rec("edit", 10.0, true)]);
        let after = crate::results::results_with(vec![rec("baseline", 30.0, false)]);
        let c = compare(&before, &after);
        let edit = c.iter().find(|s| s.step == "edit").unwrap();
        assert_eq!(edit.lost.as_deref(), Some("missing from the second file"));
        assert!(edit.is_regression());
        let baseline = c.iter().find(|s| s.step == "baseline").unwrap();
        assert!(baseline.lost.is_none() && !baseline.is_regression());
    }

    #[test]
    fn a_step_that_failed_in_both_files_is_no_regression() {
        let before = crate::results::results_with(vec![rec("baseline", 30.0, false), failed("edit", "exit code 1")]);
        let after = crate::results::results_with(vec![rec("baseline", 30.0, false), failed("edit", "exit code 1")]);
        let c = compare(&before, &after);
        assert!(c.iter().all(|s| !s.is_regression() && s.lost.is_none()), "{c:?}");
    }

    #[test]
    fn a_step_that_fails_in_some_repetitions_but_still_builds_is_not_lost() {
        let before = crate::results::results_with(vec![rec("edit", 10.0, true)]);
        let after = crate::results::results_with(vec![failed("edit", "exit code 1"), rec("edit", 10.0, true)]);
        let c = compare(&before, &after);
        assert_eq!(c.len(), 1);
        assert!(c[0].lost.is_none());
    }

    #[test]
    fn a_doubled_time_over_two_repetitions_is_inconclusive_not_a_regression() {
        let before = crate::results::results_with(vec![rec("edit", 10.0, true), rec("edit", 10.2, true)]);
        let after = crate::results::results_with(vec![rec("edit", 20.0, true), rec("edit", 20.4, true), rec("edit", 20.2, true)]);
        let c = compare(&before, &after);
        let r = c[0].ratio.as_ref().unwrap();
        assert!(r.low > 1.0 && r.inconclusive() && !r.significant(), "{r:?}");
        assert!(!c[0].is_regression());
        assert!(r.describe().contains("inconclusive"), "{}", r.describe());
        // A lost cache hit is a fact, not a statistic: it stays a regression with few repetitions.
        let lost = crate::results::results_with(vec![rec("edit", 10.0, false)]);
        assert!(compare(&before, &lost)[0].is_regression());
    }

    fn on(engine: &str, download_cached: bool) -> BuildRecord {
        let mut r = rec("edit", 10.0, download_cached);
        r.engine = engine.into();
        r.cell = Some(0);
        r
    }

    #[test]
    fn two_files_from_different_engines_name_each_difference_of_the_same_cell() {
        let before = crate::results::results_with(vec![on("old", true)]);
        let after = crate::results::results_with(vec![on("modern", false)]);
        let c = compare(&before, &after);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].engine_differences, ["rep 1 · `RUN go mod download`: cached on old, executed on modern"]);
        let same = compare(&before, &crate::results::results_with(vec![on("old", false)]));
        assert!(same[0].engine_differences.is_empty(), "one engine in both files: a plain comparison");
    }

    #[test]
    fn a_matrix_file_is_paired_engine_by_engine_and_its_engines_differences_are_named() {
        let mut matrix = crate::results::results_with(vec![on("old", true), on("modern", false)]);
        matrix.options.matrix = true;
        let c = compare(&matrix, &matrix);
        let keys: Vec<&str> = c.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["static-scratch × edit-go-source · buildkit · loopback on old", "static-scratch × edit-go-source · buildkit · loopback on modern"]);
        assert!(c.iter().all(|s| s.cache_changes.is_empty() && !s.is_regression()), "{c:?}");
        assert_eq!(c[0].engine_differences, ["rep 1 · `RUN go mod download`: cached on old (first file), executed on modern (first file), cached on old (second file), executed on modern (second file)"]);
        let d = engine_differences(&matrix, &crate::results::results_with(vec![on("old", true)])).unwrap();
        assert_eq!(d.engines.iter().map(|e| e.label.as_str()).collect::<Vec<_>>(), ["old (first file)", "modern", "old (second file)"]);
    }

    #[test]
    fn a_step_in_only_one_file_has_no_ratio() {
        let a = crate::results::results_with(vec![rec("edit", 10.0, true)]);
        let b = crate::results::results_with(vec![rec("other", 10.0, true)]);
        let c = compare(&a, &b);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|s| s.ratio.is_none()));
        assert!(c[0].after.is_none() && c[1].before.is_none());
    }
}
