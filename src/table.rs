//! The end-of-run table: per cell, each build's cache outcomes, time and proxy requests (plain text, from results only).

use crate::results::{BuildRecord, LayerRecord, MissKind, Results};

/// One block per cell (variant, scenario, builder, repetition), in run order.
pub fn cell_tables(results: &Results) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < results.records.len() {
        let first = &results.records[i];
        let same_cell = |r: &BuildRecord| {
            r.variant == first.variant && r.scenario == first.scenario && r.builder == first.builder && r.repetition == first.repetition
        };
        let end = results.records[i..].iter().position(|r| !same_cell(r)).map_or(results.records.len(), |n| i + n);
        out.push_str(&format!(
            "{} × {} · {} · rep {} ({})\n",
            first.variant,
            first.scenario,
            first.builder.name(),
            first.repetition,
            first.cache_state.name()
        ));
        out.push_str(&format!("  {:<16} {:>6} {:>8} {:>9} {:>7}  {}\n", "step", "cached", "executed", "time", "proxy", "executed steps"));
        for r in &results.records[i..end] {
            // FROM is resolving the base image, not a cacheable step: it is not counted.
            let steps: Vec<_> = r.layers.iter().filter(|l| !l.is_base_image()).collect();
            let cached = steps.iter().filter(|l| l.cached).count();
            let executed: Vec<String> = r.layers.iter().filter(|l| !l.cached && !l.is_base_image()).map(|l| with_reason(r, l)).collect();
            let detail = match (&r.error, r.outcome.as_str()) {
                (Some(e), "not-applicable") => e.clone(),
                (Some(e), _) => format!("FAILED: {e}"),
                (None, _) => executed.join(" | "),
            };
            out.push_str(&format!(
                "  {:<16} {:>6} {:>8} {:>9} {:>7}  {}\n",
                r.step,
                cached,
                steps.len() - cached,
                crate::analysis::stats::DurationFormat::new(r.wall_ms / 1000.0, &[], 2).show(r.wall_ms / 1000.0),
                r.proxy.requests,
                detail
            ));
        }
        out.push('\n');
        i = end;
    }
    out
}

/// An executed step with why it missed: `COPY . . [files: main.go (content)]`;
/// in a build that ignored the cache only each stage's first step says `[cold]`.
pub fn with_reason(record: &BuildRecord, layer: &LayerRecord) -> String {
    let cold = record.layers.iter().any(|l| l.miss_reason.as_ref().is_some_and(|m| m.kind == MissKind::Cold));
    match &layer.miss_reason {
        Some(m) if !(cold && m.kind == MissKind::Follows) => format!("{} [{}]", layer.instruction, m.short()),
        _ => layer.instruction.clone(),
    }
}

/// Per variant × scenario × builder × network × step, over repetitions:
/// median, min, max and spread of the wall time, with outliers and wide spreads flagged.
pub fn statistics_table(results: &Results) -> String {
    use crate::analysis::stats::Summary;
    // (variant, scenario, builder, network, step) and the wall times of its repetitions.
    type Group = ((String, String, String, String, String), Vec<f64>);
    let mut groups: Vec<Group> = Vec::new();
    for r in results.records.iter().filter(|r| r.outcome == "ok") {
        let key = (r.variant.clone(), r.scenario.clone(), r.builder.name().to_string(), r.network.clone(), r.step.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r.wall_ms / 1000.0),
            None => groups.push((key, vec![r.wall_ms / 1000.0])),
        }
    }
    let mut out = format!(
        "{:<44} {:<16} {:>2} {:>8} {:>8} {:>8} {:>7}  notes\n",
        "variant × scenario · builder · network", "step", "n", "median", "min", "max", "spread"
    );
    for ((variant, scenario, builder, network, step), values) in &groups {
        let Some(s) = Summary::of(values) else { continue };
        let mut notes = Vec::new();
        if !s.outliers.is_empty() {
            notes.push(format!("outliers: {}", s.outliers.iter().map(|i| format!("rep {}", i + 1)).collect::<Vec<_>>().join(", ")));
        }
        if s.n > 1 && s.too_wide() {
            notes.push("spread too wide to compare".to_string());
        }
        // One unit per row (ms below 0.1 s), with digits that show a non-zero range and spread.
        let f = crate::analysis::stats::DurationFormat::new(s.median, &[s.min, s.max, s.spread], 2);
        out.push_str(&format!(
            "{:<44} {:<16} {:>2} {:>8} {:>8} {:>8} {:>7}  {}\n",
            format!("{variant} × {scenario} · {builder} · {network}"),
            step,
            s.n,
            f.show(s.median),
            f.show(s.min),
            f.show(s.max),
            f.show(s.spread),
            notes.join("; ")
        ));
    }
    out
}

/// A comparison of two results files, one line per cell step, cache changes indented below.
pub fn compare_table(steps: &[crate::analysis::compare::StepComparison]) -> String {
    let secs = |s: &Option<crate::analysis::stats::Summary>| s.as_ref().map_or("-".to_string(), |s| crate::analysis::stats::seconds_text(s.median));
    let mut out = format!("{:<52} {:<18} {:>9} {:>9}  change\n", "variant × scenario · builder · network", "step", "before", "after");
    for s in steps {
        let change = match (&s.lost, &s.ratio) {
            (Some(_), _) => "no longer builds".to_string(),
            (None, Some(r)) => r.describe(),
            (None, None) if s.before.is_none() => "only in the second file".to_string(),
            (None, None) => "only in the first file".to_string(),
        };
        let flag = if s.is_regression() { "  REGRESSION" } else { "" };
        out.push_str(&format!("{:<52} {:<18} {:>9} {:>9}  {change}{flag}\n", s.key, s.step, secs(&s.before), secs(&s.after)));
        if let Some(lost) = &s.lost {
            out.push_str(&format!("    {}\n", one_line(lost, 240)));
        }
        for c in &s.cache_changes {
            out.push_str(&format!("    {c}\n"));
        }
    }
    out
}

/// `check`'s judgements: per template and scenario step, each expectation's outcome with expected and measured values, and why below a failure.
pub fn check_table(judgements: &[crate::analysis::expect::Judgement]) -> String {
    use crate::analysis::expect::Outcome;
    let mut out = String::new();
    let mut last: (String, String) = (String::new(), String::new());
    for j in judgements {
        if j.template != last.0 {
            out.push_str(&format!("{} ({})\n", j.template, j.dockerfile));
        }
        let scope = match (&j.scenario, &j.step) {
            (Some(s), Some(step)) => format!("{s} · {step}"),
            (Some(s), None) => s.clone(),
            (None, _) => "every build".to_string(),
        };
        let scope = match j.builder {
            Some(b) => format!("{scope} · {}", b.name()),
            None => scope,
        };
        if j.template != last.0 || scope != last.1 {
            out.push_str(&format!("  {scope}\n"));
        }
        last = (j.template.clone(), scope);
        out.push_str(&format!("    {:<12} {:<38} {}\n", j.outcome.label(), j.expectation, j.measured));
        if j.outcome != Outcome::Pass {
            out.push_str(&format!("    {:<12} expected {}\n", "", j.expected));
        }
        if let (Some(reason), false) = (&j.reason, j.outcome == Outcome::Pass) {
            let at = j.line.map_or_else(String::new, |n| format!(" (line {n})"));
            out.push_str(&format!("    {:<12} why{at}: {reason}\n", ""));
        }
    }
    out
}

/// `text` on one line (whitespace runs collapsed), cut to `max` characters with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// The claim verdicts as an aligned table: id, verdict, evidence.
pub fn verdict_table(verdicts: &[crate::analysis::verdicts::ClaimVerdict]) -> String {
    let mut out = String::from("claim  verdict                 evidence\n");
    for v in verdicts {
        out.push_str(&format!("{:<6} {:<23} {}\n", v.id, v.verdict.label(), v.evidence));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::*;

    fn record(step: &str, cached: &[bool], requests: usize) -> BuildRecord {
        let names: Vec<String> = (0..cached.len()).map(|i| format!("RUN step{i}")).collect();
        let steps: Vec<(&str, bool, f64)> = names.iter().zip(cached).map(|(n, c)| (n.as_str(), *c, 0.001)).collect();
        crate::results::record_with("layered", "edit-go-source", step, 1.5, &steps, requests)
    }

    #[test]
    fn a_cell_table_lists_each_build_with_its_outcomes() {
        let results = crate::results::results_with(vec![record("baseline", &[false, false], 56), record("edit-handler", &[true, false], 0)]);
        let table = cell_tables(&results);
        assert!(table.starts_with("layered × edit-go-source · buildkit · rep 1 (cold)\n"), "{table}");
        let stats = statistics_table(&results);
        assert!(stats.lines().nth(1).is_some_and(|l| l.contains("baseline") && l.contains("1.50 s")), "{stats}");
        let line = table.lines().find(|l| l.trim_start().starts_with("edit-handler")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..6], ["edit-handler", "1", "1", "1.50", "s", "0"]);
        assert!(line.ends_with("RUN step1"));
    }

    #[test]
    fn a_compare_table_flags_a_step_that_no_longer_builds_with_its_error_on_one_line() {
        let mut failed = record("edit-handler", &[], 0);
        failed.outcome = "failed".into();
        failed.error = Some("at `RUN go build`:\n  main.go:3: undefined: x".into());
        let before = crate::results::results_with(vec![record("baseline", &[false], 56), record("edit-handler", &[true], 0)]);
        let after = crate::results::results_with(vec![failed]);
        let table = compare_table(&crate::analysis::compare::compare(&before, &after));
        let lines: Vec<&str> = table.lines().collect();
        let edit = lines.iter().position(|l| l.contains("edit-handler")).unwrap();
        assert!(lines[edit].ends_with("no longer builds  REGRESSION"), "{table}");
        assert_eq!(lines[edit + 1], "    its build failed in the second file: at `RUN go build`: main.go:3: undefined: x");
        let baseline = lines.iter().position(|l| l.contains("baseline")).unwrap();
        assert!(lines[baseline].ends_with("no longer builds  REGRESSION"), "{table}");
        assert_eq!(lines[baseline + 1], "    missing from the second file");
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx…");
    }

    #[test]
    fn executed_steps_say_why_they_missed() {
        let mut edit = record("edit-handler", &[true, false, false], 0);
        edit.layers[1].miss_reason = Some(MissReason { kind: MissKind::Files, detail: "main.go (content)".into(), line: Some(7) });
        edit.layers[2].miss_reason = Some(MissReason { kind: MissKind::Follows, detail: "`RUN step1` (line 7) missed".into(), line: Some(7) });
        let mut cold = record("baseline", &[false, false], 0);
        cold.layers[0].miss_reason = Some(MissReason { kind: MissKind::Cold, detail: "the build ignored the cache".into(), line: None });
        cold.layers[1].miss_reason = Some(MissReason { kind: MissKind::Follows, detail: "`RUN step0` missed".into(), line: Some(1) });
        let table = cell_tables(&crate::results::results_with(vec![cold, edit]));
        assert!(table.contains("RUN step1 [files: main.go (content)] | RUN step2 [follows line 7]\n"), "{table}");
        assert!(table.contains("RUN step0 [cold] | RUN step1\n"), "a cold build does not repeat `follows` on every step: {table}");
    }

    #[test]
    fn builds_under_a_tenth_of_a_second_are_shown_in_milliseconds() {
        let mut quick = record("rebuild", &[true], 0);
        quick.wall_ms = 53.0;
        let mut again = quick.clone();
        again.wall_ms = 54.0;
        let results = crate::results::results_with(vec![quick, again]);
        assert!(cell_tables(&results).contains("53 ms"), "{}", cell_tables(&results));
        let stats = statistics_table(&results);
        assert!(stats.lines().nth(1).is_some_and(|l| l.contains("54 ms") && l.contains("53 ms")), "{stats}");
    }
}
