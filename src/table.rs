//! The end-of-run table: per cell, each build's cache outcomes, time and proxy requests (plain text, from results only).

use crate::report::charts::{cut, shorten};
use crate::results::{BuildRecord, LayerRecord, MissKind, Results};

/// The terminal width the end-of-run tables fit without wrapping.
pub const WIDTH: usize = 100;

/// One block per cell (variant, scenario, builder, repetition), in run order; in a matrix, one per cell and engine,
/// named in its heading.
pub fn cell_tables(results: &Results) -> String {
    let mut out = String::new();
    let matrix = results.is_matrix();
    let mut i = 0;
    while i < results.records.len() {
        let first = &results.records[i];
        let same_cell = |r: &BuildRecord| {
            r.variant == first.variant && r.scenario == first.scenario && r.builder == first.builder && r.repetition == first.repetition && r.engine == first.engine
        };
        let end = results.records[i..].iter().position(|r| !same_cell(r)).map_or(results.records.len(), |n| i + n);
        let on = if matrix { format!(" on {}", crate::analysis::engines::shown_name(&first.engine)) } else { String::new() };
        out.push_str(&format!(
            "{} × {} · {} · rep {} ({}){on}\n",
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
            let detail = match (&r.error, r.outcome) {
                (Some(e), crate::results::Outcome::NotApplicable) => e.clone(),
                (Some(e), outcome) => format!("{}: {e}", outcome.as_str().to_uppercase()),
                (None, _) => executed.join(" | "),
            };
            // The full list is in the results and the report; here it is cut to the terminal's 100 columns.
            let detail = shorten(&detail, WIDTH - 54);
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
/// median, min, max and spread of the wall time, with outliers and wide spreads flagged; in a matrix, per engine too
/// (`network on engine`): engines are never pooled as repetitions.
pub fn statistics_table(results: &Results) -> String {
    use crate::analysis::stats::Summary;
    // (variant, scenario, builder, network, step) and the wall times of its repetitions.
    type Group = ((String, String, String, String, String), Vec<f64>);
    let matrix = results.is_matrix();
    let mut groups: Vec<Group> = Vec::new();
    for r in results.records.iter().filter(|r| r.outcome.is_ok()) {
        let network = if matrix { format!("{} on {}", r.network, crate::analysis::engines::shown_name(&r.engine)) } else { r.network.clone() };
        let key = (r.variant.clone(), r.scenario.clone(), r.builder.name().to_string(), network, r.step.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r.wall_ms / 1000.0),
            None => groups.push((key, vec![r.wall_ms / 1000.0])),
        }
    }
    let mut out = format!(
        "{:<40} {:<14} {:>2} {:>8} {:>8} {:>8} {:>7}  notes\n",
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
        let line = format!(
            "{:<40} {:<14} {:>2} {:>8} {:>8} {:>8} {:>7}  {}",
            shorten(&format!("{variant} × {scenario} · {builder} · {network}"), 40),
            shorten(step, 14),
            s.n,
            f.show(s.median),
            f.show(s.min),
            f.show(s.max),
            f.show(s.spread),
            notes.join("; ")
        );
        out.push_str(&cut(line.trim_end(), WIDTH));
        out.push('\n');
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
            (None, None) if s.before.is_none() && s.after.is_none() => "builds differ between engines".to_string(),
            (None, None) if s.before.is_none() => "only in the second file".to_string(),
            (None, None) => "only in the first file".to_string(),
        };
        let flag = if s.is_regression() { "  REGRESSION" } else { "" };
        out.push_str(&format!("{:<52} {:<18} {:>9} {:>9}  {change}{flag}\n", s.key, s.step, secs(&s.before), secs(&s.after)));
        if let Some(lost) = &s.lost {
            out.push_str(&format!("    {}\n", shorten(lost, 240)));
        }
        for c in &s.cache_changes {
            out.push_str(&format!("    {c}\n"));
        }
        for e in &s.engine_differences {
            out.push_str(&format!("    engines: {e}\n"));
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
        let scope = match &j.network {
            Some(n) => format!("{scope} · {n}"),
            None => scope,
        };
        if j.template != last.0 || scope != last.1 {
            out.push_str(&format!("  {scope}\n"));
        }
        last = (j.template.clone(), scope);
        match &j.engine {
            // `check --matrix`: every judgement line names the engine it was judged on.
            Some(engine) => out.push_str(&format!("    {:<12} {:<10} {:<38} {}\n", j.outcome.label(), format!("on {engine}"), j.expectation, j.measured)),
            None => out.push_str(&format!("    {:<12} {:<38} {}\n", j.outcome.label(), j.expectation, j.measured)),
        }
        if j.outcome != Outcome::Pass {
            out.push_str(&format!("    {:<12} expected {}\n", "", j.expected));
        }
        if let (Some(reason), false) = (&j.reason, j.outcome == Outcome::Pass) {
            let at = j.line.map_or_else(String::new, |n| format!(" (line {n})"));
            let mut lines = reason.lines();
            out.push_str(&format!("    {:<12} why{at}: {}\n", "", lines.next().unwrap_or("")));
            for line in lines {
                out.push_str(&format!("    {:<12}   {line}\n", ""));
            }
        }
    }
    out
}

/// The claim verdicts as an aligned table: id, verdict, evidence.
pub fn verdict_table(verdicts: &[crate::analysis::verdicts::ClaimVerdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        // The claim's own words, then what the results show, wrapped under it.
        out.push_str(&format!("{:<4} {:<22} {}\n", v.id, v.verdict.label(), crate::analysis::verdicts::claim_summary(&v.id)));
        out.push_str(&format!("       evidence: {}\n", v.evidence));
    }
    fit(&out)
}

/// Where the engines of a matrix differ, to fit 100 columns: a heading naming each engine and its version, then per
/// differing cell step what differs with each engine's value in its column, then the verdicts that differ; or the
/// line saying that nothing differs across N engines and M cell steps.
pub fn engine_differences(d: &crate::analysis::engines::EngineDifferences) -> String {
    let engines: Vec<String> = d.engines.iter().map(|e| format!("{}: {}", e.label, e.version)).collect();
    let mut out = format!("engines compared: {}\n", engines.join("; "));
    if d.none_differ() {
        out.push_str(&format!("  {}\n", d.agreement()));
        return out;
    }
    let n = d.engines.len().max(1);
    const WHAT: usize = 30;
    let column = ((WIDTH - 4 - WHAT - n) / n).max(8);
    if d.steps.is_empty() {
        out.push_str(&format!("  no cell step differs ({} compared)\n", d.cell_steps));
    } else {
        out.push_str(&format!("  {} of {} cell steps differ:\n", d.steps.len(), d.cell_steps));
        let mut header = format!("    {:<WHAT$}", "step");
        for e in &d.engines {
            header.push_str(&format!(" {:<column$}", shorten(&e.label, column)));
        }
        out.push_str(header.trim_end());
        out.push('\n');
        for s in &d.steps {
            out.push_str(&cut(&format!("  {} · {}", s.cell, s.step), WIDTH));
            out.push('\n');
            for diff in &s.differences {
                let mut line = format!("    {:<WHAT$}", shorten(&diff.what, WHAT));
                for v in &diff.values {
                    line.push_str(&format!(" {:<column$}", shorten(v, column)));
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }
    for v in &d.verdicts {
        let on: Vec<String> = v.verdicts.iter().zip(&d.engines).map(|(verdict, e)| format!("{} on {}", verdict.label(), e.label)).collect();
        out.push_str(&cut(&format!("  verdict {} differs: {}", v.claim, on.join(", ")), WIDTH));
        out.push('\n');
    }
    out
}

/// `text` with every line longer than `WIDTH` wrapped at spaces (a word longer than a line, such as a long path,
/// is broken), each continuation indented four more than its line; a trailing newline is kept.
pub fn fit(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.chars().count() <= WIDTH {
            out.push(line.to_string());
            continue;
        }
        let indent = " ".repeat(line.len() - line.trim_start().len());
        let more = format!("{indent}    ");
        let options = textwrap::Options::new(WIDTH).initial_indent(&indent).subsequent_indent(&more);
        out.extend(textwrap::wrap(line.trim_start(), options).into_iter().map(|l| l.into_owned()));
    }
    let mut fitted = out.join("\n");
    if text.ends_with('\n') {
        fitted.push('\n');
    }
    fitted
}

/// The run's time outside builds as a share of the time in them, and where it went (none before anything was built).
pub fn overhead(results: &Results) -> Option<String> {
    let o = results.overhead.filter(|o| o.builds_ms > 0.0)?;
    Some(format!("time outside builds: {}\n", o.summary()))
}

/// What each rebuild did, side by side per scenario step: per template the median rebuild time, the modules the proxy
/// served, and the steps it re-ran (cut to fit 100 columns).
pub fn findings(results: &Results) -> String {
    use crate::analysis::stats::{seconds_text, wall_seconds};
    use crate::report::charts::{cells_of, repetitions, scenarios, steps_of};
    let mut out = String::new();
    for scenario in scenarios(results) {
        for step in steps_of(results, &scenario).into_iter().filter(|s| s != "baseline") {
            let cells = cells_of(results, &scenario, &step);
            let Some(first) = cells.first() else { continue };
            out.push_str(&format!("after {scenario} · {step} ({}, {}):\n", first.builder.name(), first.network));
            out.push_str(&format!("  {:<22} {:>9} {:>7}  {}\n", "template", "rebuild", "modules", "re-ran"));
            for r in cells.iter().copied() {
                let reps: Vec<&BuildRecord> = repetitions(results, r).into_iter().filter(|o| o.outcome.is_ok()).collect();
                let (time, modules, reran) = match (wall_seconds(&reps), reps.first()) {
                    (Some(s), Some(o)) => (
                        seconds_text(s.median),
                        o.proxy.modules.len().to_string(),
                        o.layers.iter().filter(|l| !l.cached && !l.is_base_image()).map(|l| l.instruction.as_str()).collect::<Vec<_>>().join(" | "),
                    ),
                    _ => ("-".into(), "-".into(), format!("{}: {}", r.outcome, r.error.as_deref().unwrap_or("no successful build"))),
                };
                let reran = if reran.is_empty() { "nothing (every step cached)".to_string() } else { reran };
                let label = if cells.iter().any(|c| c.builder != first.builder || c.network != first.network) {
                    format!("{} · {} · {}", r.variant, r.builder.name(), r.network)
                } else {
                    r.variant.clone()
                };
                out.push_str(&format!("  {:<22} {:>9} {:>7}  {}\n", shorten(&label, 22), time, modules, shorten(&reran, WIDTH - 45)));
            }
        }
    }
    out
}

/// [`findings`] per engine for a matrix (`on old (Docker 20.10.24 (API 1.41)):` above each engine's), else as they are.
pub fn findings_per_engine(results: &Results) -> String {
    if !results.is_matrix() {
        return findings(results);
    }
    let mut out = String::new();
    for name in results.record_engines() {
        let one = results.of_engine(&name);
        let version = one.records.first().map(|r| one.engine_version_of(r).to_string()).unwrap_or_default();
        out.push_str(&format!("on {}, {version}:\n", crate::analysis::engines::shown_name(&name)));
        out.push_str(&findings(&one));
    }
    out
}

/// The verdicts a run settled (those it did not measure are left out), each evidence line wrapped below its claim
/// to fit the terminal's 100 columns.
pub fn settled_verdicts(verdicts: &[crate::analysis::verdicts::ClaimVerdict]) -> String {
    use crate::analysis::verdicts::Verdict;
    let mut out = String::new();
    for v in verdicts.iter().filter(|v| v.verdict != Verdict::NotMeasured) {
        let claim = format!("{} {}: {}", v.id, v.verdict.label(), crate::analysis::verdicts::claim_summary(&v.id));
        for line in textwrap::wrap(&claim, textwrap::Options::new(WIDTH).subsequent_indent("  ")) {
            out.push_str(&line);
            out.push('\n');
        }
        for line in textwrap::wrap(&v.evidence, textwrap::Options::new(WIDTH).initial_indent("    ").subsequent_indent("    ")) {
            out.push_str(&line);
            out.push('\n');
        }
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
        let columns = |l: &str| l.find(" baseline ").or_else(|| l.find(" edit-handler ")).map_or(0, |at| l[..at].chars().count());
        assert!(stats.lines().skip(1).all(|l| columns(l) == 40), "the step column is aligned: {stats}");
        let line = table.lines().find(|l| l.trim_start().starts_with("edit-handler")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..6], ["edit-handler", "1", "1", "1.50", "s", "0"]);
        assert!(line.ends_with("RUN step1"));
    }

    #[test]
    fn a_compare_table_flags_a_step_that_no_longer_builds_with_its_error_on_one_line() {
        let mut failed = record("edit-handler", &[], 0);
        failed.outcome = crate::results::Outcome::Failed;
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
        assert_eq!(shorten(&"x".repeat(10), 4), "xxx…");
    }

    #[test]
    fn findings_put_each_templates_rebuild_side_by_side_within_100_columns() {
        let steps = |download_cached| [("COPY go.mod go.sum ./", true, 0.01), ("RUN go mod download", download_cached, 0.4), ("COPY . .", false, 0.01), ("RUN CGO_ENABLED=0 go build -ldflags \"-X main.version=dev\" -o /out/sample .", false, 17.0)];
        let mut naive = crate::results::record_with("naive", "edit-go-source", "edit-handler", 18.0, &steps(false), 17);
        naive.proxy.modules = vec!["github.com/go-chi/chi/v5@v5.0.8".into(); 17];
        let good = crate::results::record_with("static-scratch", "edit-go-source", "edit-handler", 17.1, &steps(true), 0);
        let text = findings(&crate::results::results_with(vec![naive, good]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "after edit-go-source · edit-handler (buildkit, loopback):");
        assert!(lines[2].starts_with("  naive") && lines[2].contains("18.0 s") && lines[2].contains(" 17  RUN go mod download | COPY . . | RUN CGO"), "{text}");
        assert!(lines[3].starts_with("  static-scratch") && lines[3].contains("17.1 s") && lines[3].contains("  0  COPY . . | RUN CGO"), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn settled_verdicts_leave_out_what_was_not_measured_and_wrap_their_evidence() {
        use crate::analysis::verdicts::{ClaimVerdict, Verdict};
        let verdicts = [
            ClaimVerdict { id: "C2".into(), verdict: Verdict::Confirmed, evidence: "word ".repeat(60) },
            // Its claim is longer than a line once the verdict is before it.
            ClaimVerdict { id: "C1".into(), verdict: Verdict::ConfirmedWithCaveat, evidence: "e".into() },
            ClaimVerdict { id: "C3".into(), verdict: Verdict::NotMeasured, evidence: "not measured: needs a bump".into() },
        ];
        let text = settled_verdicts(&verdicts);
        assert!(text.starts_with("C2 confirmed: A dependency bump rebuilds"), "{text}");
        assert!(!text.contains("C3"), "{text}");
        assert!(text.lines().count() >= 4 && text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
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
        // The full list is in the results; the table cuts it to 100 columns.
        assert!(table.contains("RUN step1 [files: main.go (content)] | RUN st…\n"), "{table}");
        assert!(table.lines().all(|l| l.chars().count() <= WIDTH), "{table}");
        assert!(table.contains("RUN step0 [cold] | RUN step1\n"), "a cold build does not repeat `follows` on every step: {table}");
    }

    #[test]
    fn engine_differences_fit_100_columns_or_say_that_none_differ() {
        use crate::analysis::engines::{CellStepDifference, Difference, EngineColumn, EngineDifferences, VerdictDifference};
        use crate::analysis::verdicts::Verdict;
        let engines = vec![
            EngineColumn { label: "old".into(), version: "Docker 20.10.24 (API 1.41)".into() },
            EngineColumn { label: "modern".into(), version: "Docker 26.1.5 (API 1.45)".into() },
        ];
        let none = EngineDifferences { engines: engines.clone(), cell_steps: 4, steps: vec![], verdicts: vec![] };
        assert_eq!(engine_differences(&none), "engines compared: old: Docker 20.10.24 (API 1.41); modern: Docker 26.1.5 (API 1.45)\n  no cell step differs across 2 engines (old, modern) and 4 cell steps, nor any verdict\n");
        let some = EngineDifferences {
            engines,
            cell_steps: 4,
            steps: vec![CellStepDifference {
                cell: "naive × edit-go-source · buildkit · rep 1 · loopback".into(),
                step: "baseline".into(),
                differences: vec![Difference { what: "`WORKDIR /src` (line 3)".into(), values: vec!["cached".into(), "executed (cold: the build ignored the cache and so on and on)".into()] }],
            }],
            verdicts: vec![VerdictDifference { claim: "C5".into(), verdicts: vec![Verdict::Confirmed, Verdict::Refuted] }],
        };
        let text = engine_differences(&some);
        assert!(text.contains("  1 of 4 cell steps differ:\n"), "{text}");
        assert!(text.contains("  naive × edit-go-source · buildkit · rep 1 · loopback · baseline\n"), "{text}");
        let row = text.lines().find(|l| l.contains("WORKDIR")).unwrap();
        assert!(row.starts_with("    `WORKDIR /src` (line 3)") && row.contains(" cached ") && row.contains("executed (cold"), "{text}");
        assert!(text.contains("  verdict C5 differs: confirmed on old, refuted on modern\n"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
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

    #[test]
    fn long_lines_wrap_within_the_width_at_spaces_and_a_long_path_is_broken() {
        let path = format!("/{}", "a/very/long/path/".repeat(10));
        let text = format!("short\n  report: {path}REPORT.md (5 charts as SVG and PNG in {path}charts; summary {path}summary.csv)\n");
        let fitted = fit(&text);
        assert!(fitted.ends_with('\n') && fitted.starts_with("short\n  report:"), "{fitted}");
        assert!(fitted.lines().all(|l| l.chars().count() <= WIDTH), "{fitted}");
        assert!(fitted.lines().skip(2).all(|l| l.starts_with("      ")), "continuations are indented: {fitted}");
        assert_eq!(fitted.split_whitespace().collect::<String>().len(), text.split_whitespace().collect::<String>().len(), "nothing is lost");
        assert_eq!(fit("a\nb"), "a\nb");
    }

    #[test]
    fn the_verdict_table_states_each_claim_and_fits_100_columns() {
        use crate::analysis::verdicts::{ClaimVerdict, Verdict};
        let v = ClaimVerdict { id: "C5".into(), verdict: Verdict::Confirmed, evidence: "touch-only kept COPY . . cached in every build: ".repeat(4) };
        let text = verdict_table(&[v]);
        assert!(text.starts_with("C5   confirmed") && text.contains("COPY is keyed by content"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
    }
}
