//! Verdicts on the layer-cache claims (C1–C7, X1–X3): step order, what a layer is keyed by, and what a cached or re-run download costs.

use crate::analysis::megabytes;
use crate::analysis::stats::{wall_seconds, Ratio};
use crate::results::{BuildRecord, Builder, LayerRecord};

use super::{build_seconds, build_step, cached_count, is_cold, layer, not_measured, requests, secs, step_seconds, Records, Verdict, GOOD, LOOPBACK};

/// static-scratch with `COPY . .` moved above the download and nothing else changed: C1's and C6's like-for-like comparison.
pub(super) const NAIVE_TWIN: &str = "static-scratch-naive";

/// Where a build's wall time went, in seconds: the download step, the build step, every other step, and the rest (wall minus the steps: sending the context, solving, exporting the image).
#[derive(Debug, Clone, Copy, Default)]
struct TimeSplit {
    download: f64,
    build: f64,
    other_steps: f64,
    export: f64,
}

impl TimeSplit {
    fn of(r: &BuildRecord) -> TimeSplit {
        let steps: Vec<&LayerRecord> = r.layers.iter().filter(|l| !l.is_base_image()).collect();
        let all: f64 = steps.iter().map(|l| l.duration_ms).sum::<f64>() / 1000.0;
        let download = layer(r, "RUN go mod download").map_or(0.0, |l| l.duration_ms / 1000.0);
        let build = build_step(r).map_or(0.0, |l| l.duration_ms / 1000.0);
        TimeSplit { download, build, other_steps: all - download - build, export: r.wall_ms / 1000.0 - all }
    }

    /// The means over the records (means, so the parts add up to the mean wall time).
    fn mean(records: &[&BuildRecord]) -> TimeSplit {
        let n = records.len().max(1) as f64;
        records.iter().map(|r| TimeSplit::of(r)).fold(TimeSplit::default(), |a, b| TimeSplit {
            download: a.download + b.download / n,
            build: a.build + b.build / n,
            other_steps: a.other_steps + b.other_steps / n,
            export: a.export + b.export / n,
        })
    }

    fn total(&self) -> f64 {
        self.download + self.build + self.other_steps + self.export
    }

    /// `gap 5.6 s = download 5.1 s + build 0.3 s + other steps 0.0 s + export and overhead 0.2 s` for `b − a`.
    fn describe_gap(a: &TimeSplit, b: &TimeSplit) -> String {
        // One decimal, and no `-0.0` for a difference that rounds to nothing.
        let s = |x: f64| format!("{:.1}", if x.abs() < 0.05 { 0.0 } else { x });
        format!(
            "mean gap {} s = download {} s + build {} s + other steps {} s + export and overhead {} s",
            s(b.total() - a.total()),
            s(b.download - a.download),
            s(b.build - a.build),
            s(b.other_steps - a.other_steps),
            s(b.export - a.export)
        )
    }
}

pub(super) fn c1(r: &Records) -> (Verdict, String) {
    let Some((good, g)) = r.good("edit-go-source", "edit-handler") else {
        return not_measured("edit-go-source rebuild of static-scratch or layered");
    };
    // The like-for-like twin when measured; otherwise naive, for the cache outcomes only.
    let twin = r.find(NAIVE_TWIN, "edit-go-source", "edit-handler");
    let (bad, n) = if good == "static-scratch" && !twin.is_empty() { (NAIVE_TWIN, twin) } else { ("naive", r.find("naive", "edit-go-source", "edit-handler")) };
    if n.is_empty() {
        return not_measured("edit-go-source rebuild of static-scratch-naive or naive");
    }
    let (gc, gt) = cached_count(&g, "RUN go mod download");
    let (nc, nt) = cached_count(&n, "RUN go mod download");
    let bad_modules: usize = n.iter().map(|r| r.proxy.modules.len()).max().unwrap_or(0);
    let mut evidence = format!(
        "after edit-go-source, {good} kept `RUN go mod download` cached ({gc}/{gt}) and the proxy saw {} requests; {bad} re-ran it ({}/{nt}, {bad_modules} modules fetched)",
        requests(&g),
        nt - nc
    );
    let mut significant = true;
    let mut faster = true;
    let mut compared = false;
    if bad == NAIVE_TWIN {
        evidence.push_str(&format!(" ({bad} differs from {good} only in the order of the COPY steps)"));
        for network in std::iter::once(LOOPBACK.to_string()).chain(r.networks()) {
            let gs = r.find_in(good, "edit-go-source", "edit-handler", Builder::Buildkit, &network);
            let ns = r.find_in(bad, "edit-go-source", "edit-handler", Builder::Buildkit, &network);
            if let (Some(a), Some(b)) = (wall_seconds(&gs), wall_seconds(&ns)) {
                if let Some(ratio) = Ratio::of(&a, &b) {
                    compared = true;
                    evidence.push_str(&format!(
                        "; rebuild median on {network} {} vs {} ({}), {}",
                        secs(&a),
                        secs(&b),
                        ratio.describe(),
                        TimeSplit::describe_gap(&TimeSplit::mean(&gs), &TimeSplit::mean(&ns))
                    ));
                    significant &= ratio.significant();
                    faster &= ratio.value < 1.0;
                    if a.too_wide() || b.too_wide() {
                        evidence.push_str(" [spread too wide to compare]");
                    }
                }
            }
        }
    }
    if !compared {
        evidence.push_str(&format!(
            "; rebuild times not compared: {NAIVE_TWIN}, which differs from static-scratch only in the COPY order, was not measured (naive also differs in base image, cgo and stages)"
        ));
    }
    let verdict = if gc == gt && requests(&g) == 0 && nc == 0 {
        if compared && significant && faster {
            Verdict::Confirmed
        } else {
            if compared {
                evidence.push_str("; the cache outcomes hold but the time saving is not significant on every network profile");
            }
            Verdict::ConfirmedWithCaveat
        }
    } else {
        Verdict::Refuted
    };
    (verdict, evidence)
}

pub(super) fn c2(r: &Records) -> (Verdict, String) {
    let Some((good, b)) = r.good("bump-dependency", "bump-toml") else {
        return not_measured("bump-dependency build of static-scratch or layered");
    };
    let mut all_rebuilt = true;
    let mut copy_missed = true;
    for rec in &b {
        let stage: Vec<&LayerRecord> = rec.layers.iter().filter(|l| l.stage == "build").collect();
        match stage.iter().position(|l| l.instruction.starts_with("COPY go.mod")) {
            Some(i) => {
                copy_missed &= !stage[i].cached;
                all_rebuilt &= stage[i..].iter().all(|l| !l.cached);
            }
            None => return not_measured("`COPY go.mod` step in the bump build"),
        }
    }
    let notes: Vec<&String> = b.iter().flat_map(|rec| rec.notes.iter()).collect();
    // The bump's own note names the module and its new version: `github.com/BurntSushi/toml v1.2.0 -> v1.3.2`.
    let bumped = notes.iter().find_map(|n| {
        let words: Vec<&str> = n.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "->")?;
        (at >= 2 && at + 1 < words.len()).then(|| format!("{}@{}", words[at - 2], words[at + 1]))
    });
    // Only the bumped version counts: a request for any other version of the module is not what the claim says.
    let new_modules: Vec<&String> = b.iter().flat_map(|rec| rec.proxy.modules.iter()).filter(|m| bumped.as_ref() == Some(*m)).collect();
    let other_modules: Vec<&String> = b.iter().flat_map(|rec| rec.proxy.modules.iter()).filter(|m| m.starts_with("github.com/BurntSushi/toml@") && bumped.as_ref() != Some(*m)).collect();
    let evidence = format!(
        "after bump-dependency ({}), {good} re-ran `COPY go.mod go.sum` and every later step of its build stage in {}/{} builds; the proxy served {}",
        notes.first().map_or("a bump", |n| n.as_str()),
        if all_rebuilt { b.len() } else { 0 },
        b.len(),
        match (&bumped, new_modules.is_empty()) {
            (None, _) => "nothing the test can check: no note names the bumped version".to_string(),
            (Some(v), true) if other_modules.is_empty() => format!("no {v}"),
            (Some(v), true) => format!("{} but not {v}", other_modules.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
            (Some(v), false) => v.clone(),
        }
    );
    let verdict = if copy_missed && all_rebuilt && !new_modules.is_empty() { Verdict::Confirmed } else { Verdict::Refuted };
    (verdict, evidence)
}

pub(super) fn c3(r: &Records) -> (Verdict, String) {
    let mut stage_builds = 0;
    // Stage builds with a miss before their last step: the only ones where a later hit could break the claim.
    let mut could_break = 0;
    let mut violations = Vec::new();
    // Builds where a stage missed and a later stage still had a hit (a `COPY --from` keyed by the copied files' content).
    let mut later_stage_hits = Vec::new();
    for rec in r.0.records.iter().filter(|x| x.outcome.is_ok() && x.step != "baseline") {
        let mut stages: Vec<&str> = rec.layers.iter().map(|l| l.stage.as_str()).collect();
        stages.dedup();
        let mut missed_stage: Option<&str> = None;
        let mut noted = false;
        for stage in stages {
            let steps: Vec<&LayerRecord> = rec.layers.iter().filter(|l| l.stage == stage && !l.is_base_image()).collect();
            if steps.is_empty() {
                continue;
            }
            stage_builds += 1;
            if let (Some(earlier), false) = (missed_stage, noted) {
                if let Some(hit) = steps.iter().find(|l| l.cached) {
                    later_stage_hits.push(format!("{} {} {}: `{}` ({stage}) hit after {earlier} missed", rec.variant, rec.scenario, rec.step, hit.instruction));
                    noted = true;
                }
            }
            let Some(miss) = steps.iter().position(|l| !l.cached) else { continue };
            missed_stage.get_or_insert(stage);
            if miss + 1 == steps.len() {
                continue;
            }
            could_break += 1;
            if let Some(hit) = steps[miss + 1..].iter().find(|l| l.cached) {
                violations.push(format!("{} {} {} `{}` after `{}` missed", rec.variant, rec.scenario, rec.step, hit.instruction, steps[miss].instruction));
            }
        }
    }
    if could_break == 0 {
        return not_measured(&format!("rebuild with a miss before the last step of a stage (of {stage_builds} stage builds in rebuilds, none could show a hit after a miss)"));
    }
    let across = match later_stage_hits.first() {
        Some(e) => format!(
            "; the claim is per stage: in {} builds a later stage still hit after an earlier stage missed (a `COPY --from` is keyed by the files it copies), e.g. {e}",
            later_stage_hits.len()
        ),
        None => "; the claim is per stage: a later stage's `COPY --from` may hit after an earlier stage missed (not seen in these builds)".to_string(),
    };
    if violations.is_empty() {
        (
            Verdict::Confirmed,
            format!("in the {could_break} stage builds of rebuilds that had a miss before their last step (of {stage_builds} stage builds in rebuilds), no later step of that stage came from the cache{across}"),
        )
    } else {
        (
            Verdict::Refuted,
            format!("{} of the {could_break} stage builds with a miss before their last step had a later cache hit in the same stage, e.g. {}{across}", violations.len(), violations[0]),
        )
    }
}

pub(super) fn c4(r: &Records) -> (Verdict, String) {
    let p = r.find("fetch-latest", "upstream-publishes-new-version", "publish-toml-v1.3.2");
    let base = r.find("fetch-latest", "upstream-publishes-new-version", "baseline");
    if p.is_empty() || base.is_empty() {
        return not_measured("fetch-latest × upstream-publishes-new-version builds");
    }
    let (c, t) = cached_count(&p, "RUN go mod download -json");
    // The version `@latest` resolved to, as written into the image at build time.
    let fetched = |recs: &[&BuildRecord]| {
        recs.iter()
            .filter_map(|rec| rec.inspection.as_ref())
            .flat_map(|i| i.files.iter())
            .find(|(path, _)| path == "/toml-latest.json")
            .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|v| v.get("Version").and_then(|v| v.as_str()).map(str::to_string))
    };
    let before = fetched(&base).unwrap_or_else(|| "unknown".into());
    let after = fetched(&p).unwrap_or_else(|| "unknown".into());
    let evidence = format!(
        "after the proxy started serving BurntSushi/toml v1.3.2 with no file changed, `RUN go mod download -json ...toml@latest` stayed cached ({c}/{t}), the proxy saw {} requests, and the image still records @latest as {after} (baseline: {before})",
        requests(&p)
    );
    let stale = c == t && requests(&p) == 0 && after == before && after != "v1.3.2" && after != "unknown";
    // "Stale" is said only when it was observed.
    if stale {
        (Verdict::Confirmed, format!("{evidence}: a cached `@latest` layer is stale"))
    } else {
        (Verdict::Refuted, format!("{evidence}: no stale `@latest` layer was observed"))
    }
}

pub(super) fn c5(r: &Records) -> (Verdict, String) {
    let (Some((good, touch)), Some((_, edit))) = (r.good("touch-only", "touch-sources"), r.good("edit-go-source", "edit-handler")) else {
        return not_measured("touch-only and edit-go-source rebuilds of static-scratch or layered");
    };
    let touch_all = touch.iter().all(|rec| rec.layers.iter().filter(|l| !l.instruction.starts_with("FROM")).all(|l| l.cached));
    let (ec, et) = cached_count(&edit, "COPY . .");
    let chmod = r.good("chmod-source", "chmod-main").map(|(_, recs)| cached_count(&recs, "COPY . ."));
    let mut evidence = format!(
        "{good}: touch-only left every step cached ({}); a content edit missed `COPY . .` ({}/{et})",
        if touch_all { "yes" } else { "no" },
        et - ec
    );
    let verdict = match (touch_all && ec == 0, chmod) {
        (false, _) => Verdict::Refuted,
        (true, Some((cc, ct))) if cc < ct => {
            evidence.push_str(&format!("; chmod 0755 of main.go (same content) also missed `COPY . .` ({}/{ct}): file mode is part of the key", ct - cc));
            Verdict::ConfirmedWithCaveat
        }
        (true, Some((_, ct))) => {
            evidence.push_str(&format!("; chmod kept `COPY . .` cached ({ct}/{ct})"));
            Verdict::Confirmed
        }
        (true, None) => {
            evidence.push_str("; chmod not measured");
            Verdict::Confirmed
        }
    };
    (verdict, evidence)
}

pub(super) fn c6(r: &Records) -> (Verdict, String) {
    let Some(good) = GOOD.iter().find(|v| !r.baselines(v).is_empty()) else {
        return not_measured("cold baseline of static-scratch or layered");
    };
    if let Some(refusal) = r.refuse_not_cold(good) {
        return refusal;
    }
    let mut evidence = Vec::new();
    let mut holds = true;
    let mut skipped_measured = Vec::new();
    for network in std::iter::once(LOOPBACK.to_string()).chain(r.networks()) {
        let recs: Vec<&BuildRecord> = r
            .0
            .records
            .iter()
            .filter(|x| x.variant == *good && is_cold(x) && x.builder == Builder::Buildkit && x.network == network && x.outcome.is_ok())
            .collect();
        let Some(copy) = step_seconds(&recs, "COPY go.mod") else { continue };
        let mut line = format!("on {network}, a cold build's `COPY go.mod go.sum` took {}", secs(&copy));
        if let Some(dl) = step_seconds(&recs, "RUN go mod download") {
            holds &= copy.median < dl.median;
            line.push_str(&format!(" and `RUN go mod download` {}", secs(&dl)));
        }
        // The saving itself: the download the good order keeps cached and the naive order re-runs after a .go edit.
        let good_edit = r.find_in(good, "edit-go-source", "edit-handler", Builder::Buildkit, &network);
        let twin_edit = r.find_in(NAIVE_TWIN, "edit-go-source", "edit-handler", Builder::Buildkit, &network);
        let (gc, gt) = cached_count(&good_edit, "RUN go mod download");
        let ran: Vec<&BuildRecord> = twin_edit.iter().copied().filter(|x| layer(x, "RUN go mod download").is_some_and(|l| !l.cached)).collect();
        if let (true, Some(skipped), Some(good_wall), Some(twin_wall)) = (gt > 0 && !ran.is_empty(), step_seconds(&ran, "RUN go mod download"), wall_seconds(&good_edit), wall_seconds(&twin_edit)) {
            // The saving, measured: the twin's rebuild against the good order's. The claim holds when the download
            // the twin re-runs makes most of that gap and costs more than the COPY the good order pays once.
            let gap = twin_wall.median - good_wall.median;
            holds &= gc == gt && skipped.median > copy.median && gap > 0.0 && skipped.median >= gap / 2.0;
            skipped_measured.push(network.clone());
            line.push_str(&format!(
                "; after a .go edit {good} kept the download cached ({gc}/{gt}) where {NAIVE_TWIN} re-ran it for {}; the rebuilds took {} against {}, a gap of {} of which the download is {:.0}%",
                secs(&skipped),
                secs(&good_wall),
                secs(&twin_wall),
                crate::analysis::stats::seconds_text(gap),
                if gap > 0.0 { 100.0 * skipped.median / gap } else { 0.0 }
            ));
        }
        evidence.push(line);
    }
    if evidence.is_empty() {
        return not_measured("step times of a cold baseline");
    }
    let mut evidence = format!("{good}: {}", evidence.join("; "));
    let shaped = r.networks();
    let verdict = if !holds {
        Verdict::Refuted
    } else if skipped_measured.is_empty() {
        evidence.push_str(&format!("; the skipped download was not measured (no edit-go-source rebuilds of {NAIVE_TWIN})"));
        Verdict::ConfirmedWithCaveat
    } else if shaped.is_empty() || !shaped.iter().all(|n| skipped_measured.contains(n)) || !skipped_measured.iter().any(|n| n == LOOPBACK) {
        evidence.push_str(&format!("; the skipped download was measured only on {}", skipped_measured.join(", ")));
        Verdict::ConfirmedWithCaveat
    } else {
        Verdict::Confirmed
    };
    (verdict, evidence)
}

/// The module path a proxy request names (its `module`, or the path before `/@v/` or `/@latest`).
fn requested_module(q: &crate::results::ServedRequest) -> String {
    if let Some(m) = &q.module {
        return m.clone();
    }
    let path = q.path.trim_start_matches('/');
    let end = path.find("/@v/").or_else(|| path.find("/@latest")).unwrap_or(path.len());
    path[..end].to_string()
}

/// A standard-library import path: its first element has no dot (`fmt`, `net/http`, `std`), unlike every module path.
fn is_standard_library(module: &str) -> bool {
    !module.is_empty() && !module.split('/').next().unwrap_or("").contains('.')
}

pub(super) fn c7(r: &Records) -> (Verdict, String) {
    let logged: Vec<&BuildRecord> = r.0.records.iter().filter(|x| x.outcome.is_ok() && !x.proxy.log.is_empty()).collect();
    if logged.is_empty() {
        return not_measured("proxy request log (every request, answered or not)");
    }
    let requests: Vec<&crate::results::ServedRequest> = logged.iter().flat_map(|x| x.proxy.log.iter()).collect();
    let unanswered = requests.iter().filter(|q| q.status != 200).count();
    let standard: Vec<String> = requests.iter().map(|q| requested_module(q)).filter(|m| is_standard_library(m)).collect();
    let mut evidence = format!(
        "in {} builds the proxy received {} requests ({unanswered} unanswered), {} naming a standard-library path{}",
        logged.len(),
        requests.len(),
        standard.len(),
        standard.first().map_or(String::new(), |s| format!(" (e.g. `{s}`)"))
    );
    // What the download layer writes, from single-stage images (a multi-stage image does not keep its build stage's layers).
    let layers = |step: &str| {
        r.0.records.iter().filter(|x| x.outcome.is_ok() && is_cold(x)).find_map(|rec| {
            let contents = rec.inspection.as_ref()?.layer_contents.iter().find(|c| c.created_by.contains(step))?;
            Some((rec, contents))
        })
    };
    let download = layers("go mod download");
    if let Some((rec, c)) = download {
        evidence.push_str(&format!(
            "; {}'s download layer holds {} files, {} in the module cache, {} in the Go build cache ({} compiled outputs) and {} package archives",
            rec.variant,
            c.files,
            megabytes(c.module_cache_bytes),
            megabytes(c.build_cache_bytes),
            c.compiled_outputs,
            c.package_archives
        ));
        if let Some((_, b)) = layers("go build").filter(|(b, _)| b.variant == rec.variant) {
            evidence.push_str(&format!("; its `go build` layer holds {} compiled outputs ({} in the Go build cache)", b.compiled_outputs, megabytes(b.build_cache_bytes)));
        }
    }
    // Step times only from cold baselines: a warm one reports cached steps in no time.
    let base: Vec<&BuildRecord> = GOOD.iter().map(|v| r.baselines(v).into_iter().filter(|b| is_cold(b)).collect::<Vec<_>>()).find(|b| !b.is_empty()).unwrap_or_default();
    if let (Some(dl), Some(build)) = (step_seconds(&base, "RUN go mod download"), build_seconds(&base)) {
        evidence.push_str(&format!("; on a cold build `go mod download` took {} and `go build`, which compiles the standard library, {}", secs(&dl), secs(&build)));
    }
    let compiled = download.is_some_and(|(_, c)| c.compiled_outputs > 0 || c.package_archives > 0);
    let verdict = match (standard.is_empty(), compiled, download.is_some()) {
        (false, _, _) | (_, true, _) => Verdict::Confirmed,
        (true, false, true) => Verdict::Refuted,
        // Neither seen, but what the download layer wrote is not recorded: the claim's other half is untested.
        (true, false, false) => {
            evidence.push_str("; what the download layer writes is not recorded (it needs a cold single-stage image whose final stage keeps the `go mod download` layer, read by a run that settles C7: `--layer-contents`, or a suite whose `claims` include it)");
            Verdict::NotMeasured
        }
    };
    (verdict, evidence)
}

pub(super) fn x1(r: &Records) -> (Verdict, String) {
    let with = r.find("naive", "git-commit-only", "empty-commit");
    let without = r.find("naive-no-dockerignore", "git-commit-only", "empty-commit");
    if with.is_empty() || without.is_empty() {
        return not_measured("git-commit-only rebuilds of naive and naive-no-dockerignore");
    }
    let (wc, wt) = cached_count(&with, "COPY . .");
    let (oc, ot) = cached_count(&without, "COPY . .");
    let evidence = format!(
        "after a commit that changed no file, `COPY . .` stayed cached with .dockerignore ({wc}/{wt}) and missed without it ({}/{ot})",
        ot - oc
    );
    let verdict = if wc == wt && oc == 0 { Verdict::Confirmed } else { Verdict::Refuted };
    (verdict, evidence)
}

/// cache-mount with its cache mounts removed and nothing else changed: X2's like-for-like comparison.
pub(super) const MOUNT_TWIN: &str = "no-cache-mount";

pub(super) fn x2(r: &Records) -> (Verdict, String) {
    let m = r.find("cache-mount", "edit-go-source", "edit-handler");
    let g = r.find(MOUNT_TWIN, "edit-go-source", "edit-handler");
    let (Some(a), Some(b)) = (build_seconds(&m), build_seconds(&g)) else {
        return not_measured(&format!("build-step times of cache-mount and its twin {MOUNT_TWIN} (the same Dockerfile without the mounts) after edit-go-source"));
    };
    let Some(ratio) = Ratio::of(&a, &b) else {
        return not_measured("non-zero build-step times");
    };
    let evidence = format!(
        "build step after edit-go-source: cache-mount {} vs {MOUNT_TWIN}, its twin without the mounts, {} ({})",
        secs(&a),
        secs(&b),
        ratio.describe()
    );
    // Refuted only when the interval shows cache-mount no faster; an interval across 1 settles nothing.
    let verdict = if ratio.significant() && ratio.value < 1.0 {
        Verdict::Confirmed
    } else if !ratio.inconclusive() && ratio.low >= 1.0 {
        Verdict::Refuted
    } else {
        Verdict::Inconclusive
    };
    (verdict, evidence)
}

pub(super) fn x3(r: &Records) -> (Verdict, String) {
    let Some((good, after)) = r.good("reorder-copy", "edit-after-reorder") else {
        return not_measured("reorder-copy builds of static-scratch or layered");
    };
    let (c, t) = cached_count(&after, "RUN go mod download");
    let evidence = format!(
        "with `COPY . .` moved above the download, a .go edit re-ran `RUN go mod download` in {good} ({}/{t}) and the proxy saw {} requests",
        t - c,
        requests(&after)
    );
    let verdict = if c == 0 && t > 0 && requests(&after) > 0 { Verdict::Confirmed } else { Verdict::Refuted };
    (verdict, evidence)
}
