//! Verdicts on the final-image claims (C8–C11): the binary's linkage, whether it runs in scratch, image size, and the user it runs as.

use crate::analysis::megabytes;
use crate::results::BuildRecord;

use super::{not_measured, Records, Verdict};

fn binary_of<'r>(recs: &[&'r BuildRecord]) -> Option<&'r crate::results::BinaryFacts> {
    recs.iter().filter_map(|r| r.inspection.as_ref()).find_map(|i| i.binary.as_ref())
}

fn runtime_of<'r>(recs: &[&'r BuildRecord]) -> Option<&'r crate::results::RuntimeCheck> {
    recs.iter().filter_map(|r| r.inspection.as_ref()).find_map(|i| i.runtime.as_ref())
}

pub(super) fn c8(r: &Records) -> (Verdict, String) {
    let (Some(s), Some(d)) = (binary_of(&r.baselines("static-scratch")), binary_of(&r.baselines("dynamic-debian"))) else {
        return not_measured("inspected binaries of static-scratch and dynamic-debian");
    };
    let evidence = format!(
        "static-scratch {}: {} (interpreter {}, needs {}); dynamic-debian {}: {} (interpreter {}, needs {})",
        s.path,
        s.linkage,
        s.interpreter.as_deref().unwrap_or("none"),
        if s.needed.is_empty() { "nothing".into() } else { s.needed.join(", ") },
        d.path,
        d.linkage,
        d.interpreter.as_deref().unwrap_or("none"),
        if d.needed.is_empty() { "nothing".into() } else { d.needed.join(", ") },
    );
    let verdict = if s.linkage == "static" && d.linkage == "dynamic" && d.needed.iter().any(|n| n.starts_with("libc.")) {
        Verdict::Confirmed
    } else {
        Verdict::Refuted
    };
    (verdict, evidence)
}

pub(super) fn c9(r: &Records) -> (Verdict, String) {
    let (Some(s), Some(d)) = (runtime_of(&r.baselines("static-scratch")), runtime_of(&r.baselines("dynamic-scratch"))) else {
        return not_measured("runtime checks of static-scratch and dynamic-scratch");
    };
    let first_line = |o: &str| o.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let evidence = format!(
        "static-scratch: exit {}, self-test {}; dynamic-scratch: exit {}, `{}`",
        s.exit_code,
        if s.passed { "passed" } else { "failed" },
        d.exit_code,
        first_line(&d.output)
    );
    let verdict = if s.passed && d.exit_code != 0 && !d.passed { Verdict::Confirmed } else { Verdict::Refuted };
    (verdict, evidence)
}

pub(super) fn c10(r: &Records) -> (Verdict, String) {
    let size = |v: &str| r.baselines(v).iter().find_map(|b| b.image.as_ref().map(|i| i.size_bytes));
    // Images whose binary runs where it is: static-scratch must be the smallest of these.
    let runnable = ["naive", "layered-single", "dynamic-debian", "static-scratch"];
    let sizes: Vec<(&str, u64)> = runnable.iter().filter_map(|v| size(v).map(|s| (*v, s))).collect();
    let (Some(stat), Some(naive)) = (size("static-scratch"), size("naive")) else {
        return not_measured("image sizes of naive and static-scratch");
    };
    let mut evidence = format!(
        "image sizes: {} (static-scratch is {:.1}% of naive)",
        sizes.iter().map(|(v, s)| format!("{v} {}", megabytes(*s))).collect::<Vec<_>>().join(", "),
        stat as f64 * 100.0 / naive as f64
    );
    let tiny = sizes.iter().all(|(_, s)| stat <= *s) && (stat as f64) < naive as f64 * 0.1;
    if !tiny {
        return (Verdict::Refuted, evidence);
    }
    // The dynamic binary in the same empty base tells static linking apart from the base image.
    let Some(dynamic) = size("dynamic-scratch") else {
        evidence.push_str("; no dynamic binary in scratch was built, so static linking is not told apart from the empty base image");
        return (Verdict::ConfirmedWithCaveat, evidence);
    };
    evidence.push_str(&format!("; the dynamic binary in scratch (dynamic-scratch) is {}, so the size comes from the empty base image", megabytes(dynamic)));
    match runtime_of(&r.baselines("dynamic-scratch")) {
        Some(run) if run.passed => {
            evidence.push_str(&format!(", and it runs there (exit {}): static linking is not what makes the image tiny", run.exit_code));
            (Verdict::Refuted, evidence)
        }
        Some(run) => {
            evidence.push_str(&format!(", but it does not run there (exit {}): static linking is what allows that base", run.exit_code));
            (Verdict::Confirmed, evidence)
        }
        None => {
            evidence.push_str("; whether it runs there was not measured");
            (Verdict::ConfirmedWithCaveat, evidence)
        }
    }
}

pub(super) fn c11(r: &Records) -> (Verdict, String) {
    let (Some(root), Some(user)) = (runtime_of(&r.baselines("naive")), runtime_of(&r.baselines("static-scratch"))) else {
        return not_measured("runtime checks of naive and static-scratch");
    };
    let config = |v: &str| r.baselines(v).iter().find_map(|b| b.image.as_ref().map(|i| i.user.clone())).unwrap_or_default();
    let yn = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let evidence = format!(
        "naive: Config.User `{}`, uid {}, can write its binary {}, can write /etc {}; static-scratch: Config.User `{}`, uid {}, can write its binary {}, can write /etc {} (checked by the process itself in a container with no network)",
        config("naive"),
        root.uid.map_or("?".into(), |u| u.to_string()),
        yn(root.can_write_binary),
        yn(root.can_write_etc),
        config("static-scratch"),
        user.uid.map_or("?".into(), |u| u.to_string()),
        yn(user.can_write_binary),
        yn(user.can_write_etc),
    );
    // Both sides of the claim: root may write its binary and /etc; the USER may write neither.
    let verdict = if root.uid == Some(0)
        && root.can_write_binary == Some(true)
        && root.can_write_etc == Some(true)
        && user.uid.is_some_and(|u| u != 0)
        && user.can_write_binary == Some(false)
        && user.can_write_etc == Some(false)
    {
        Verdict::Confirmed
    } else {
        Verdict::Refuted
    };
    (verdict, evidence)
}
