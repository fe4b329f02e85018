//! Verdicts on the claims judged per builder, BuildKit against the legacy builder (X4, X5): where a changed build argument first misses, and which stages run and when.

use crate::results::{BuildRecord, Builder, LayerRecord};

use super::{layer, not_measured, Records, Verdict, LOOPBACK};

/// The Dockerfile whose `ARG APP_VERSION` stands before a `RUN` that never mentions it, then its first explicit use.
pub(super) const ARG_VARIANT: &str = "arg-then-run";
/// The Dockerfile that declares `ARG APP_VERSION` just before its first use, the build step.
pub(super) const ARG_LATE: &str = "static-scratch";
/// The step before the declaration, the `RUN` between the declaration and the first explicit use, and that use.
const ARG_BEFORE: &str = "RUN go mod download";
const ARG_BETWEEN: &str = "RUN go env";
pub(super) const ARG_USE: &str = "RUN CGO_ENABLED=0 go build";

fn cached_word(cached: bool) -> &'static str {
    if cached {
        "cached"
    } else {
        "missed"
    }
}

/// X4 on the template that declares the argument just before its use: `(kept, evidence)`, kept when every earlier
/// step of the stage stayed cached and the use missed.
fn arg_declared_late(rec: &BuildRecord) -> Option<(bool, String)> {
    let at = rec.layers.iter().position(|l| l.instruction.starts_with(ARG_USE))?;
    let used = &rec.layers[at];
    let earlier: Vec<&LayerRecord> = rec.layers[..at].iter().filter(|l| l.stage == used.stage && !l.is_base_image()).collect();
    if earlier.is_empty() {
        return None;
    }
    let missed: Vec<&str> = earlier.iter().filter(|l| !l.cached).map(|l| l.instruction.as_str()).collect();
    let kept = missed.is_empty() && !used.cached;
    let before = if missed.is_empty() {
        format!("its {} earlier steps (the declaration's included where the builder records it) cached", earlier.len())
    } else {
        format!("{} of its {} earlier steps missed (first `{}`)", missed.len(), earlier.len(), missed[0])
    };
    Some((kept, format!("{ARG_LATE}, which declares the ARG just before its use: {before}, the use `RUN ... go build` {}", cached_word(used.cached))))
}

/// X4 on the template with a `RUN` between the declaration and the first explicit use: `(refuted, implicit, evidence)`.
/// The explicit use's own miss is not evidence here: it follows the miss of the `RUN` before it.
fn arg_then_run(rec: &BuildRecord) -> Option<(bool, bool, String)> {
    let (before, between) = (layer(rec, ARG_BEFORE)?, layer(rec, ARG_BETWEEN)?);
    let decl = layer(rec, "ARG APP_VERSION");
    let refuted = !before.cached || decl.is_some_and(|d| !d.cached);
    let evidence = format!(
        "{ARG_VARIANT}: `{ARG_BEFORE}` before the declaration {}{}, the `RUN go env ...` after it, which never names the argument, {}",
        cached_word(before.cached),
        decl.map_or(String::new(), |d| format!(", the `ARG APP_VERSION` step itself {}", cached_word(d.cached))),
        cached_word(between.cached)
    );
    Some((refuted, !between.cached, evidence))
}

pub(super) fn x4(r: &Records) -> (Verdict, String) {
    let mut parts = Vec::new();
    let mut refuted = false;
    // What each template showed, by builder: the late declaration keeping the earlier steps, the RUN between missing.
    let (mut late, mut between, mut implicit) = (Vec::new(), Vec::new(), Vec::new());
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let name = builder.name();
        let mut said = Vec::new();
        if let Some(rec) = r.find_in(ARG_LATE, "change-build-arg", "set-version", builder, LOOPBACK).first() {
            let Some((kept, text)) = arg_declared_late(rec) else {
                return not_measured(&format!("`{ARG_USE}` step, and steps before it, in the {name} build of {ARG_LATE} after change-build-arg"));
            };
            refuted |= !kept;
            late.push(name);
            said.push(text);
        }
        if let Some(rec) = r.find_in(ARG_VARIANT, "change-build-arg", "set-version", builder, LOOPBACK).first() {
            let Some((wrong, missed, text)) = arg_then_run(rec) else {
                return not_measured(&format!("`{ARG_BEFORE}` and `{ARG_BETWEEN}` steps in the {name} build of {ARG_VARIANT}"));
            };
            refuted |= wrong;
            between.push(name);
            if missed {
                implicit.push(name);
            }
            said.push(text);
        }
        if !said.is_empty() {
            parts.push(format!("{name}: {}", said.join("; ")));
        }
    }
    if parts.is_empty() || (late.is_empty() && !refuted) {
        return not_measured(&format!(
            "change-build-arg builds of {ARG_LATE}, which declares the ARG just before its first use (the only template that shows the earlier steps kept)"
        ));
    }
    let mut evidence = format!("after changing APP_VERSION: {}", parts.join(" | "));
    if refuted {
        return (Verdict::Refuted, evidence);
    }
    let mut caveats = Vec::new();
    if !implicit.is_empty() {
        caveats.push(format!(
            "with {} a RUN that never names the argument misses: a RUN uses every ARG declared before it through its environment, so \"first use\" means the first RUN after the ARG, not the first mention",
            implicit.join(" and ")
        ));
    }
    let all = [Builder::Buildkit, Builder::Legacy].map(|b| b.name());
    let unseen = |shown: &[&str], what: &str| all.iter().filter(|b| !shown.contains(b)).map(|b| format!("{what} with {b}")).collect::<Vec<_>>();
    let mut missing = unseen(&late, ARG_LATE);
    missing.extend(unseen(&between, ARG_VARIANT));
    if !missing.is_empty() {
        caveats.push(format!("not measured: {} (whether a RUN that never names the argument misses needs {ARG_VARIANT})", missing.join(", ")));
    }
    if caveats.is_empty() {
        return (Verdict::Confirmed, evidence);
    }
    evidence.push_str(&format!("; {}", caveats.join("; ")));
    (Verdict::ConfirmedWithCaveat, evidence)
}

/// The X5 cell's variant: stages `build` and `licenses` are independent and both needed, `vet` is not needed.
pub const STAGES_VARIANT: &str = "parallel-stages";
const UNNEEDED_STAGE: &str = "vet";

/// The longest time two executed steps of different stages ran at once, in seconds, with the two steps.
fn longest_overlap(rec: &BuildRecord) -> Option<(f64, &LayerRecord, &LayerRecord)> {
    let timed: Vec<&LayerRecord> = rec.layers.iter().filter(|l| !l.cached && !l.is_base_image() && l.start_ms.is_some() && l.end_ms.is_some()).collect();
    let mut best: Option<(f64, &LayerRecord, &LayerRecord)> = None;
    for (i, a) in timed.iter().enumerate() {
        for b in &timed[i + 1..] {
            if a.stage == b.stage {
                continue;
            }
            let (Some(a0), Some(a1), Some(b0), Some(b1)) = (a.start_ms, a.end_ms, b.start_ms, b.end_ms) else { continue };
            let overlap = (a1.min(b1) - a0.max(b0)) / 1000.0;
            if overlap > 0.0 && best.is_none_or(|(o, _, _)| overlap > o) {
                best = Some((overlap, a, b));
            }
        }
    }
    best
}

pub(super) fn x5(r: &Records) -> (Verdict, String) {
    let bk = r.find_in(STAGES_VARIANT, "no-change", "baseline", Builder::Buildkit, LOOPBACK);
    let legacy = r.find_in(STAGES_VARIANT, "no-change", "baseline", Builder::Legacy, LOOPBACK);
    let (Some(b), Some(l)) = (bk.first(), legacy.first()) else {
        return not_measured(&format!("{STAGES_VARIANT} cold baselines with both builders"));
    };
    let built = |rec: &BuildRecord| rec.layers.iter().any(|x| x.stage == UNNEEDED_STAGE && !x.is_base_image() && !x.cached);
    let describe = |rec: &BuildRecord| {
        format!(
            "{}: the unneeded {UNNEEDED_STAGE} stage {}; {}",
            rec.builder.name(),
            if built(rec) { "built" } else { "skipped" },
            match longest_overlap(rec) {
                Some((s, a, b)) => format!("stages ran at once for {s:.1} s (`{}` in {} with `{}` in {})", a.instruction, a.stage, b.instruction, b.stage),
                None => "no two stages' steps overlapped in time: one after another".to_string(),
            }
        )
    };
    let evidence = format!("{STAGES_VARIANT} cold builds: {}; {}", describe(b), describe(l));
    let verdict = if !built(b) && built(l) && longest_overlap(b).is_some() && longest_overlap(l).is_none() {
        Verdict::Confirmed
    } else {
        Verdict::Refuted
    };
    (verdict, evidence)
}
