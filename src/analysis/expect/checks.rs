//! One check per expectation key: measuring a group of builds against it, with the measured value and why it failed or is inconclusive.

use crate::analysis::megabytes;
use crate::analysis::ranks::CentreInterval;
use crate::dockerfile::{DockerfileModel, Instruction};
use crate::results::{BuildRecord, LayerRecord, MissKind, Results, LOOPBACK_NETWORK};

use super::{Expectation, Group, Judgement, Linkage, Outcome, StepPattern, TemplateExpectations};

/// The last line of the final stage's `USER`, or of its `FROM`: where an image property is decided.
fn image_line(model: &DockerfileModel, keyword: &str) -> Option<usize> {
    let last_stage = model.instructions.iter().rev().find(|i| i.keyword == "FROM").map(|i| i.stage.clone())?;
    let stage: Vec<&Instruction> = model.instructions.iter().filter(|i| i.stage == last_stage).collect();
    stage.iter().rev().find(|i| i.keyword == keyword).or_else(|| stage.first()).map(|i| i.line)
}

pub(super) fn judge_group(t: &TemplateExpectations, e: &Expectation, g: &Group<'_>, baseline: Option<&Results>, out: &mut Vec<Judgement>) {
    let mut push = |expectation: String, expected: String, verdict: Measured, line: Option<usize>| {
        out.push(Judgement {
            template: t.name.clone(),
            scenario: g.scenario.clone(),
            step: g.step.clone(),
            builder: Some(g.builder),
            expectation,
            expected,
            measured: verdict.measured,
            outcome: verdict.outcome,
            reason: verdict.reason,
            dockerfile: t.dockerfile.clone(),
            line: verdict.line.or(line),
            engine: None,
            network: (g.network != LOOPBACK_NETWORK).then(|| g.network.clone()),
        })
    };
    let ok: Vec<&BuildRecord> = g.records.iter().copied().filter(|r| r.outcome.is_ok()).collect();
    // A missing or failed build fails every check of the group: it is never silent.
    let unusable = if g.records.is_empty() {
        Some(Measured::fail("no build recorded".into(), format!("no build of {} was recorded (the cell was not run, or the run stopped before it)", where_(g, &t.name))))
    } else {
        g.records.iter().find(|r| !r.outcome.is_ok()).map(|bad| {
            Measured::fail(
                format!("{} in {} of {} builds", if bad.outcome == crate::results::Outcome::NotApplicable { "not applicable" } else { "build failed" }, g.records.len() - ok.len(), g.records.len()),
                format!("{} · {}: {}", bad.step, rep(bad), bad.error_with_output().unwrap_or_else(|| "(no message)".into())),
            )
        })
    };
    for (key, pattern) in e.patterns() {
        let name = format!("{key} = {pattern:?}");
        let expected = if key == "cached" { "cached in every build" } else { "executed in every build" };
        let line = StepPattern::parse(pattern).ok().and_then(|p| t.model.instructions.iter().find(|i| p.matches_instruction(i)).map(|i| i.line));
        let m = unusable.clone().unwrap_or_else(|| step_pattern(pattern, key == "cached", &ok));
        push(name, expected.into(), m, line);
    }
    if e.all_cached == Some(true) {
        let m = unusable.clone().unwrap_or_else(|| all_cached(&ok));
        push("all_cached = true".into(), "every step cached in every build".into(), m, None);
    }
    if let Some(max) = e.max_proxy_requests {
        let m = unusable.clone().unwrap_or_else(|| proxy_requests(max, &ok));
        push(format!("max_proxy_requests = {max}"), format!("at most {max}"), m, None);
    }
    if let Some(max) = e.max_image_size {
        let m = unusable.clone().unwrap_or_else(|| image_size(max.0, &ok));
        push(format!("max_image_size = \"{max}\""), format!("at most {}", megabytes(max.0)), m, image_line(&t.model, "FROM"));
    }
    if let Some(max) = e.max_layers {
        let m = unusable.clone().unwrap_or_else(|| layers(max, &ok));
        push(format!("max_layers = {max}"), format!("at most {max}"), m, image_line(&t.model, "FROM"));
    }
    if let Some(linkage) = e.binary {
        let m = unusable.clone().unwrap_or_else(|| binary(linkage, &ok));
        push(format!("binary = {:?}", linkage.name()), format!("a {} binary", linkage.name()), m, image_line(&t.model, "FROM"));
    }
    if let Some(user) = &e.user {
        let m = unusable.clone().unwrap_or_else(|| user_check(user, &ok));
        push(format!("user = {user:?}"), if user == "non-root" || user == "root" { format!("runs as {user}") } else { format!("USER {user}") }, m, image_line(&t.model, "USER"));
    }
    if let Some(want) = e.probe {
        let m = unusable.clone().unwrap_or_else(|| probe(want, &ok));
        push(format!("probe = {want}"), if want { "the probe passes".into() } else { "the probe fails".into() }, m, image_line(&t.model, "FROM"));
    }
    if let Some(max) = e.max_rebuild_seconds {
        let m = unusable.clone().unwrap_or_else(|| rebuild_seconds(max, &ok));
        push(format!("max_rebuild_seconds = {max}"), format!("at most {max:.2} s"), m, None);
    }
    if let Some(max) = e.max_slowdown {
        let m = unusable.clone().unwrap_or_else(|| slowdown(max, &ok, g, &t.name, baseline));
        push(format!("max_slowdown = {max}"), format!("at most {max:.2}× the baseline's time"), m, None);
    }
}

/// The measured side of one judgement.
#[derive(Debug, Clone)]
struct Measured {
    measured: String,
    outcome: Outcome,
    reason: Option<String>,
    line: Option<usize>,
}

impl Measured {
    fn pass(measured: String) -> Measured {
        Measured { measured, outcome: Outcome::Pass, reason: None, line: None }
    }
    fn fail(measured: String, reason: String) -> Measured {
        Measured { measured, outcome: Outcome::Fail, reason: Some(reason), line: None }
    }
    fn inconclusive(measured: String, reason: String) -> Measured {
        Measured { measured, outcome: Outcome::Inconclusive, reason: Some(reason), line: None }
    }
}

fn where_(g: &Group<'_>, template: &str) -> String {
    let mut w = template.to_string();
    if let Some(s) = &g.scenario {
        w.push_str(&format!(" × {s}"));
    }
    if let Some(s) = &g.step {
        w.push_str(&format!(" · {s}"));
    }
    w.push_str(&format!(" · {}", g.builder.name()));
    if g.network != LOOPBACK_NETWORK {
        w.push_str(&format!(" · {}", g.network));
    }
    w
}

fn rep(r: &BuildRecord) -> String {
    format!("rep {}", r.repetition)
}

fn step_name(l: &LayerRecord) -> String {
    match l.line {
        Some(n) => format!("`{}` (line {n})", l.instruction),
        None => format!("`{}`", l.instruction),
    }
}

/// Why an executed step missed, following a `follows` reason back (through the line it names) to the miss that started it.
pub fn why(record: &BuildRecord, layer: &LayerRecord) -> String {
    let Some(reason) = &layer.miss_reason else {
        return "no reason recorded".to_string();
    };
    let mut root = reason;
    for _ in 0..record.layers.len() {
        if root.kind != MissKind::Follows {
            break;
        }
        let next = root.line.and_then(|n| record.layers.iter().find(|l| l.line == Some(n) && !l.cached)).and_then(|l| l.miss_reason.as_ref());
        match next {
            Some(next) if next != root => root = next,
            _ => break,
        }
    }
    if root == reason {
        reason.to_string()
    } else {
        format!("{reason}, because {root}")
    }
}

fn step_pattern(pattern: &str, want_cached: bool, builds: &[&BuildRecord]) -> Measured {
    let p = match StepPattern::parse(pattern) {
        Ok(p) => p,
        Err(e) => return Measured::fail("-".into(), e),
    };
    let mut wrong = 0;
    let mut reason = None;
    let mut line = None;
    for r in builds {
        let matched: Vec<&LayerRecord> = r.layers.iter().filter(|l| p.matches_layer(l)).collect();
        if matched.is_empty() {
            return Measured::fail(
                format!("not built ({} · {})", r.step, rep(r)),
                format!("no step of this build matches `{pattern}` (its stage was not built, or the Dockerfile changed); built steps: {}", r.layers.iter().filter(|l| !l.is_base_image()).map(|l| l.instruction.as_str()).collect::<Vec<_>>().join(" | ")),
            );
        }
        line = line.or(matched[0].line);
        if let Some(off) = matched.iter().find(|l| l.cached != want_cached) {
            wrong += 1;
            if reason.is_none() {
                reason = Some(if want_cached {
                    format!("{} executed ({} · {}): {}", step_name(off), r.step, rep(r), why(r, off))
                } else {
                    format!("{} came from the cache ({} · {}): nothing it depends on changed", step_name(off), r.step, rep(r))
                });
            }
        }
    }
    let (good, bad) = if want_cached { ("cached", "executed") } else { ("executed", "cached") };
    let mut m = if wrong == 0 {
        Measured::pass(format!("{good} in {} of {} builds", builds.len(), builds.len()))
    } else {
        Measured::fail(format!("{bad} in {wrong} of {} builds", builds.len()), reason.unwrap_or_default())
    };
    m.line = line;
    m
}

fn all_cached(builds: &[&BuildRecord]) -> Measured {
    let mut worst: Option<(&BuildRecord, Vec<&LayerRecord>)> = None;
    let mut wrong = 0;
    for r in builds {
        let executed: Vec<&LayerRecord> = r.layers.iter().filter(|l| !l.cached && !l.is_base_image()).collect();
        if !executed.is_empty() {
            wrong += 1;
            if worst.as_ref().is_none_or(|(_, w)| executed.len() > w.len()) {
                worst = Some((r, executed));
            }
        }
    }
    match worst {
        None => Measured::pass(format!("all cached in {} of {} builds", builds.len(), builds.len())),
        Some((r, executed)) => {
            let first = executed[0];
            let mut m = Measured::fail(
                format!("{} steps executed in {wrong} of {} builds", executed.len(), builds.len()),
                format!("{} executed ({} · {}): {}", step_name(first), r.step, rep(r), why(r, first)),
            );
            m.line = first.line;
            m
        }
    }
}

fn proxy_requests(max: usize, builds: &[&BuildRecord]) -> Measured {
    let Some(worst) = builds.iter().max_by_key(|r| r.proxy.requests) else {
        return Measured::pass("0".into());
    };
    if worst.proxy.requests <= max {
        return Measured::pass(worst.proxy.requests.to_string());
    }
    let paths: Vec<String> = worst.proxy.log.iter().take(3).map(|q| format!("{} ({})", q.path, q.served_from)).collect();
    let more = worst.proxy.log.len().saturating_sub(3);
    Measured::fail(
        worst.proxy.requests.to_string(),
        format!(
            "{} · {} asked the module proxy {} times: {}{}",
            worst.step,
            rep(worst),
            worst.proxy.requests,
            paths.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    )
}

fn image_size(max: u64, builds: &[&BuildRecord]) -> Measured {
    let Some(worst) = builds.iter().filter_map(|r| r.image.as_ref().map(|i| (r, i))).max_by_key(|(_, i)| i.size_bytes) else {
        return Measured::fail("no image".into(), "no build produced an image".into());
    };
    let size = worst.1.size_bytes;
    if size <= max {
        return Measured::pass(megabytes(size));
    }
    let mut largest: Vec<&crate::results::LayerSize> = worst.0.inspection.as_ref().map(|i| i.layer_sizes.iter().collect()).unwrap_or_default();
    largest.sort_by_key(|l| std::cmp::Reverse(l.size_bytes));
    let named: Vec<String> = largest.iter().take(3).map(|l| format!("{} `{}`", megabytes(l.size_bytes), l.created_by.chars().take(60).collect::<String>())).collect();
    Measured::fail(megabytes(size), if named.is_empty() { format!("the image is {}", megabytes(size)) } else { format!("largest layers: {}", named.join(", ")) })
}

fn layers(max: usize, builds: &[&BuildRecord]) -> Measured {
    match builds.iter().filter_map(|r| r.image.as_ref()).map(|i| i.layer_count).max() {
        None => Measured::fail("no image".into(), "no build produced an image".into()),
        Some(n) if n <= max => Measured::pass(n.to_string()),
        Some(n) => Measured::fail(n.to_string(), format!("the image has {n} layers")),
    }
}

fn binary(want: Linkage, builds: &[&BuildRecord]) -> Measured {
    for r in builds {
        let inspection = r.inspection.as_ref();
        let Some(b) = inspection.and_then(|i| i.binary.as_ref()) else {
            let why = inspection
                .and_then(|i| i.error.clone().or_else(|| (!i.notes.is_empty()).then(|| i.notes.join("; "))))
                .unwrap_or_else(|| "the image was not inspected".to_string());
            return Measured::fail("no binary inspected".into(), format!("{} · {}: {why}", r.step, rep(r)));
        };
        if b.linkage != want.name() {
            let detail = match (&b.interpreter, b.needed.is_empty()) {
                (Some(i), _) => format!("{} has the program interpreter {i} and needs {}", b.path, if b.needed.is_empty() { "no library".into() } else { b.needed.join(", ") }),
                (None, false) => format!("{} needs {}", b.path, b.needed.join(", ")),
                (None, true) => format!("{} has no program interpreter and needs no library", b.path),
            };
            return Measured::fail(b.linkage.clone(), detail);
        }
    }
    Measured::pass(format!("{} in {} of {} builds", want.name(), builds.len(), builds.len()))
}

/// Whether a `USER` value runs as root (no USER at all does).
fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name.is_empty() || name == "root" || name == "0"
}

fn user_check(want: &str, builds: &[&BuildRecord]) -> Measured {
    for r in builds {
        let Some(image) = &r.image else {
            return Measured::fail("no image".into(), "no build produced an image".into());
        };
        let uid = r.inspection.as_ref().and_then(|i| i.runtime.as_ref()).and_then(|rt| rt.uid);
        let shown = if image.user.is_empty() { "no USER (root)".to_string() } else { format!("USER {}", image.user) };
        let ok = match want {
            "non-root" => !is_root(&image.user) && uid != Some(0),
            "root" => is_root(&image.user) || uid == Some(0),
            exact => image.user == exact,
        };
        if !ok {
            let detail = match uid {
                Some(u) => format!("the image's config has {shown}; the probe ran as uid {u}"),
                None => format!("the image's config has {shown}"),
            };
            return Measured::fail(shown, detail);
        }
    }
    let user = builds.first().and_then(|r| r.image.as_ref()).map(|i| i.user.clone()).unwrap_or_default();
    Measured::pass(if user.is_empty() { "no USER (root)".into() } else { format!("USER {user}") })
}

fn probe(want: bool, builds: &[&BuildRecord]) -> Measured {
    for r in builds {
        let Some(rt) = r.inspection.as_ref().and_then(|i| i.runtime.as_ref()) else {
            let why = r.inspection.as_ref().and_then(|i| i.error.clone()).unwrap_or_else(|| "no probe ran (the template configures none, or inspection was off)".into());
            return Measured::fail("no probe".into(), format!("{} · {}: {why}", r.step, rep(r)));
        };
        if rt.passed != want {
            let tail: String = rt.output.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" / ");
            return Measured::fail(
                format!("exit {} (expected {})", rt.exit_code, rt.expected_exit),
                format!("{} · {}: `{}` exited {}{}", r.step, rep(r), rt.command.join(" "), rt.exit_code, if tail.is_empty() { String::new() } else { format!(": {tail}") }),
            );
        }
    }
    Measured::pass(format!("{} in {} of {} builds", if want { "passed" } else { "failed" }, builds.len(), builds.len()))
}

/// The rebuild time against `max`: the exact interval of [`CentreInterval`], the one-sample side of the comparison
/// every report uses.
fn rebuild_seconds(max: f64, builds: &[&BuildRecord]) -> Measured {
    let times: Vec<f64> = builds.iter().filter(|r| r.outcome.is_ok()).map(|r| r.wall_ms / 1000.0).collect();
    let Some(c) = CentreInterval::of(&times) else {
        return Measured::fail("no time".into(), "no successful build has a time above 0".into());
    };
    let Some((low, high)) = c.interval else {
        let needed = crate::analysis::ranks::one_sample_repetitions_needed();
        return Measured::inconclusive(
            format!("{:.2} s (n = {})", c.estimate, c.n),
            format!("n = {} cannot reach 95%: a time against a threshold needs ≥ {needed} repetitions (set `repetitions = {needed}` or more)", c.n),
        );
    };
    let interval = format!("{:.2} s (95% interval {low:.2}–{high:.2} s, n = {})", c.estimate, c.n);
    if high <= max {
        Measured::pass(interval)
    } else if low > max {
        Measured::fail(interval, format!("even the interval's lower end, {low:.2} s, is above {max} s"))
    } else {
        Measured::inconclusive(interval, format!("the rebuild time is inside the noise: the interval {low:.2}–{high:.2} s contains {max} s; more repetitions would settle it"))
    }
}

fn slowdown(max: f64, builds: &[&BuildRecord], g: &Group<'_>, template: &str, baseline: Option<&Results>) -> Measured {
    let Some(before) = baseline else {
        return Measured::inconclusive("no baseline".into(), "no --baseline results to compare with".into());
    };
    let same = |r: &&BuildRecord| {
        r.outcome.is_ok()
            && r.variant == template
            && r.builder == g.builder
            && r.network == g.network
            && g.scenario.as_ref().is_none_or(|s| &r.scenario == s)
            && g.step.as_ref().is_none_or(|s| &r.step == s)
    };
    let old: Vec<&BuildRecord> = before.records.iter().filter(same).collect();
    let (Some(a), Some(b)) = (crate::analysis::stats::wall_seconds(&old), crate::analysis::stats::wall_seconds(builds)) else {
        return Measured::fail("no time".into(), format!("{} has no successful build of {} to compare with", if old.is_empty() { "the baseline" } else { "this run" }, where_(g, template)));
    };
    // The one comparison every report uses: the rank test's ratio now / before and its exact 95% interval.
    let Some(ratio) = crate::analysis::stats::Ratio::of(&b, &a) else {
        return Measured::fail("no time".into(), "a time of 0 cannot be compared".into());
    };
    let shown = format!("{:.2}× ({:.2} s → {:.2} s)", ratio.value, a.median, b.median);
    if ratio.inconclusive() {
        return Measured::inconclusive(
            format!("{shown} (n = {} before, {} now)", a.n, b.n),
            format!("{}: set `repetitions = {}` or more", ratio.describe(), crate::analysis::ranks::repetitions_needed()),
        );
    }
    let interval = format!("{shown} (95% interval {:.2}–{:.2}, n = {} before, {} now)", ratio.low, ratio.high, a.n, b.n);
    if ratio.high <= max {
        Measured::pass(interval)
    } else if ratio.low > max {
        Measured::fail(interval, format!("even the interval's lower end, {:.2}, is above {max}", ratio.low))
    } else {
        Measured::inconclusive(interval, format!("the slowdown is inside the noise: the interval {:.2}–{:.2} contains {max}; more repetitions on each side would settle it", ratio.low, ratio.high))
    }
}
