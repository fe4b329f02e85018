//! Claim verdicts: a pure function from a results file to a verdict with one line of evidence for every claim in CLAIMS.md.

use serde::{Deserialize, Serialize};

use crate::analysis::megabytes;
use crate::analysis::stats::{wall_seconds, Ratio, Summary};
use crate::results::{BuildRecord, BuildStart, Builder, LayerRecord, Results};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Confirmed,
    Refuted,
    ConfirmedWithCaveat,
    /// Measured, but not settled: too few repetitions, or an interval that overlaps the threshold (the evidence says
    /// what would settle it).
    Inconclusive,
    NotMeasured,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Refuted => "refuted",
            Verdict::ConfirmedWithCaveat => "confirmed with caveat",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimVerdict {
    pub id: String,
    pub verdict: Verdict,
    pub evidence: String,
}

/// Every claim, in CLAIMS.md order.
pub fn verdicts(results: &Results) -> Vec<ClaimVerdict> {
    let r = Records(results);
    let judges: [(&str, Judge); 16] = [
        ("C1", c1),
        ("C2", c2),
        ("C3", c3),
        ("C4", c4),
        ("C5", c5),
        ("C6", c6),
        ("C7", c7),
        ("C8", c8),
        ("C9", c9),
        ("C10", c10),
        ("C11", c11),
        ("X1", x1),
        ("X2", x2),
        ("X3", x3),
        ("X4", x4),
        ("X5", x5),
    ];
    judges
        .iter()
        .map(|(id, judge)| {
            let (verdict, evidence) = judge(&r);
            ClaimVerdict {
                id: id.to_string(),
                verdict,
                evidence,
            }
        })
        .collect()
}

/// The claim in a few words, for report tables (CLAIMS.md has the full statement).
pub fn claim_summary(id: &str) -> &'static str {
    match id {
        "C1" => "Copying go.mod/go.sum and downloading before the sources keeps the download cached on a .go edit",
        "C2" => "A dependency bump rebuilds the go.mod COPY and every layer after it",
        "C3" => "After one miss, every later layer of the stage misses",
        "C4" => "A RUN layer is keyed by its command text, so a cached download stays stale when upstream changes",
        "C5" => "COPY is keyed by content (and mode), not by mtime",
        "C6" => "The saving is the skipped download, not the cheap COPY of go.mod/go.sum",
        "C7" => "go mod download fetches the standard library",
        "C8" => "CGO_ENABLED=0 gives a static binary; cgo with net links libc dynamically",
        "C9" => "A static binary runs in scratch; a dynamic one does not",
        "C10" => "A static binary allows a tiny final image",
        "C11" => "Containers run as root unless USER says otherwise; non-root cannot modify the binary or /etc",
        "X1" => "Without .dockerignore, a commit that changes no source busts COPY . .",
        "X2" => "go build recompiles everything on an edit unless a cache mount keeps the Go build cache",
        "X3" => "Putting COPY . . before the download turns a good template into a bad one",
        "X4" => "A changed build argument misses at its first use, not at its declaration",
        "X5" => "BuildKit skips unneeded stages and runs stages in parallel; the legacy builder does not",
        _ => "",
    }
}

/// Decides one claim from the records: the verdict and its evidence line.
type Judge = fn(&Records) -> (Verdict, String);

/// The variants that play the "good template" role, in order of preference.
const GOOD: [&str; 2] = ["static-scratch", "layered"];
const LOOPBACK: &str = "loopback";

struct Records<'a>(&'a Results);

impl<'a> Records<'a> {
    /// Successful BuildKit builds on the unshaped proxy.
    fn find(&self, variant: &str, scenario: &str, step: &str) -> Vec<&'a BuildRecord> {
        self.find_in(variant, scenario, step, Builder::Buildkit, LOOPBACK)
    }

    fn find_in(&self, variant: &str, scenario: &str, step: &str, builder: Builder, network: &str) -> Vec<&'a BuildRecord> {
        self.0
            .records
            .iter()
            .filter(|r| {
                r.variant == variant
                    && r.scenario == scenario
                    && r.step == step
                    && r.builder == builder
                    && r.network == network
                    && r.outcome.is_ok()
            })
            .collect()
    }

    /// The first good variant that has records for this scenario step.
    fn good(&self, scenario: &str, step: &str) -> Option<(&'static str, Vec<&'a BuildRecord>)> {
        GOOD.iter().map(|v| (*v, self.find(v, scenario, step))).find(|(_, r)| !r.is_empty())
    }

    /// Baselines of a variant (any scenario), BuildKit, unshaped.
    fn baselines(&self, variant: &str) -> Vec<&'a BuildRecord> {
        self.0
            .records
            .iter()
            .filter(|r| r.variant == variant && r.step == "baseline" && r.builder == Builder::Buildkit && r.network == LOOPBACK && r.outcome.is_ok())
            .collect()
    }

    /// Not measured, saying why, when the variant has baselines but none was built cold (a claim about cold builds cannot use them).
    fn refuse_not_cold(&self, variant: &str) -> Option<(Verdict, String)> {
        let all: Vec<&BuildRecord> = self.0.records.iter().filter(|r| r.variant == variant && r.step == "baseline" && r.outcome.is_ok()).collect();
        (!all.is_empty() && !all.iter().any(|r| is_cold(r))).then(|| {
            (
                Verdict::NotMeasured,
                format!("the {} baselines of {variant} were not built cold (cache state warm: from the build cache), and this claim needs cold builds", all.len()),
            )
        })
    }

    fn networks(&self) -> Vec<String> {
        let mut n: Vec<String> = self.0.records.iter().map(|r| r.network.clone()).filter(|n| n != LOOPBACK).collect();
        n.sort();
        n.dedup();
        n
    }
}

/// A baseline built ignoring the build cache: the only builds whose step times and proxy requests show a cold build.
fn is_cold(r: &BuildRecord) -> bool {
    r.cache_state == BuildStart::Cold
}

fn layer<'r>(r: &'r BuildRecord, prefix: &str) -> Option<&'r LayerRecord> {
    r.layers.iter().find(|l| l.instruction.starts_with(prefix))
}

/// The stage's `go build` step, whatever precedes the command (`CGO_ENABLED=0`, cache mounts).
fn build_step(r: &BuildRecord) -> Option<&LayerRecord> {
    r.layers.iter().find(|l| l.instruction.starts_with("RUN ") && l.instruction.contains(" go build"))
}

fn build_seconds(records: &[&BuildRecord]) -> Option<Summary> {
    Summary::of(&records.iter().filter_map(|r| build_step(r)).map(|l| l.duration_ms / 1000.0).collect::<Vec<_>>())
}

/// How many of the records have the step (by instruction prefix) cached.
fn cached_count(records: &[&BuildRecord], prefix: &str) -> (usize, usize) {
    let with: Vec<bool> = records.iter().filter_map(|r| layer(r, prefix).map(|l| l.cached)).collect();
    (with.iter().filter(|c| **c).count(), with.len())
}

fn step_seconds(records: &[&BuildRecord], prefix: &str) -> Option<Summary> {
    Summary::of(&records.iter().filter_map(|r| layer(r, prefix)).map(|l| l.duration_ms / 1000.0).collect::<Vec<_>>())
}

fn requests(records: &[&BuildRecord]) -> usize {
    records.iter().map(|r| r.proxy.requests).sum()
}

fn not_measured(what: &str) -> (Verdict, String) {
    (Verdict::NotMeasured, format!("the results have no {what}"))
}

fn secs(s: &Summary) -> String {
    s.describe_seconds()
}

/// static-scratch with `COPY . .` moved above the download and nothing else changed: C1's and C6's like-for-like comparison.
const NAIVE_TWIN: &str = "static-scratch-naive";

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

fn c1(r: &Records) -> (Verdict, String) {
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

fn c2(r: &Records) -> (Verdict, String) {
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

fn c3(r: &Records) -> (Verdict, String) {
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

fn c4(r: &Records) -> (Verdict, String) {
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

fn c5(r: &Records) -> (Verdict, String) {
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

fn c6(r: &Records) -> (Verdict, String) {
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

fn c7(r: &Records) -> (Verdict, String) {
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
            evidence.push_str("; what the download layer writes is not recorded (it needs a cold single-stage image whose final stage keeps the `go mod download` layer)");
            Verdict::NotMeasured
        }
    };
    (verdict, evidence)
}

fn binary_of<'r>(recs: &[&'r BuildRecord]) -> Option<&'r crate::results::BinaryFacts> {
    recs.iter().filter_map(|r| r.inspection.as_ref()).find_map(|i| i.binary.as_ref())
}

fn runtime_of<'r>(recs: &[&'r BuildRecord]) -> Option<&'r crate::results::RuntimeCheck> {
    recs.iter().filter_map(|r| r.inspection.as_ref()).find_map(|i| i.runtime.as_ref())
}

fn c8(r: &Records) -> (Verdict, String) {
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

fn c9(r: &Records) -> (Verdict, String) {
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

fn c10(r: &Records) -> (Verdict, String) {
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

fn c11(r: &Records) -> (Verdict, String) {
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

fn x1(r: &Records) -> (Verdict, String) {
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
const MOUNT_TWIN: &str = "no-cache-mount";

fn x2(r: &Records) -> (Verdict, String) {
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

fn x3(r: &Records) -> (Verdict, String) {
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

/// The Dockerfile whose `ARG APP_VERSION` stands before a `RUN` that never mentions it, then its first explicit use.
const ARG_VARIANT: &str = "arg-then-run";
/// The Dockerfile that declares `ARG APP_VERSION` just before its first use, the build step.
const ARG_LATE: &str = "static-scratch";
/// The step before the declaration, the `RUN` between the declaration and the first explicit use, and that use.
const ARG_BEFORE: &str = "RUN go mod download";
const ARG_BETWEEN: &str = "RUN go env";
const ARG_USE: &str = "RUN CGO_ENABLED=0 go build";

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

fn x4(r: &Records) -> (Verdict, String) {
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

fn x5(r: &Records) -> (Verdict, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BinaryFacts, Inspection, RuntimeCheck};
    use crate::results::*;

    fn results(records: Vec<BuildRecord>) -> Results {
        crate::results::results_with(records)
    }

    /// A build whose steps are `(instruction, cached, seconds)` in stage `build`.
    fn build(variant: &str, scenario: &str, step: &str, wall: f64, steps: &[(&str, bool, f64)], requests: usize) -> BuildRecord {
        crate::results::record_with(variant, scenario, step, wall, steps, requests)
    }

    /// Repetitions of the time comparisons' test builds: enough for the rank test to reach 95%.
    const REPS: usize = 5;

    fn edit_rebuilds(good_download_cached: bool, good: f64, naive: f64) -> Vec<BuildRecord> {
        let mut out = Vec::new();
        for i in 0..REPS {
            let jitter = i as f64 * 0.2;
            out.push(build(
                "static-scratch",
                "edit-go-source",
                "edit-handler",
                good + jitter,
                &[("COPY go.mod go.sum ./", true, 0.0), ("RUN go mod download", good_download_cached, 0.0), ("COPY . .", false, 0.1), ("RUN CGO_ENABLED=0 go build", false, good)],
                if good_download_cached { 0 } else { 50 },
            ));
            out.push(build(
                "naive",
                "edit-go-source",
                "edit-handler",
                naive + jitter,
                &[("COPY . .", false, 0.1), ("RUN go mod download", false, 5.0), ("RUN go build", false, naive - 5.0)],
                56,
            ));
        }
        out
    }

    /// Edit rebuilds on `network` of static-scratch and its COPY-order twin: the same build step, the twin re-runs a 5 s download, and `bad` is its wall time.
    fn twin_rebuilds(network: &str, good_download_cached: bool, good: f64, bad: f64) -> Vec<BuildRecord> {
        let mut out = Vec::new();
        for i in 0..REPS {
            let jitter = i as f64 * 0.2;
            let mut g = build(
                "static-scratch",
                "edit-go-source",
                "edit-handler",
                good + jitter,
                &[("COPY go.mod go.sum ./", true, 0.0), ("RUN go mod download", good_download_cached, if good_download_cached { 0.0 } else { 5.0 }), ("COPY . .", false, 0.1), ("RUN CGO_ENABLED=0 go build", false, good - 1.0)],
                if good_download_cached { 0 } else { 50 },
            );
            let mut t = build(
                NAIVE_TWIN,
                "edit-go-source",
                "edit-handler",
                bad + jitter,
                &[("COPY go.mod go.sum ./", true, 0.0), ("COPY . .", false, 0.1), ("RUN go mod download", false, 5.0), ("RUN CGO_ENABLED=0 go build", false, good - 1.0)],
                56,
            );
            g.network = network.into();
            t.network = network.into();
            out.extend([g, t]);
        }
        out
    }

    /// A cold baseline of static-scratch on `network` whose module-file COPY and download take the seconds given.
    fn cold_good(network: &str, copy: f64, download: f64) -> BuildRecord {
        let mut b = build(
            "static-scratch",
            "edit-go-source",
            "baseline",
            30.0,
            &[("COPY go.mod go.sum ./", false, copy), ("RUN go mod download", false, download), ("COPY . .", false, 0.1), ("RUN CGO_ENABLED=0 go build", false, 20.0)],
            50,
        );
        b.network = network.into();
        b
    }

    /// A build of `variant` with `builder` whose steps are `(stage, instruction, cached, start s, end s)`.
    fn staged(variant: &str, scenario: &str, step: &str, builder: Builder, steps: &[(&str, &str, bool, f64, f64)]) -> BuildRecord {
        let mut b = build(variant, scenario, step, 60.0, &[], 0);
        b.builder = builder;
        b.layers = steps
            .iter()
            .map(|(stage, instruction, cached, start, end)| LayerRecord {
                stage: stage.to_string(),
                instruction: instruction.to_string(),
                line: None,
                vertex: String::new(),
                cached: *cached,
                duration_ms: (end - start) * 1000.0,
                start_ms: Some(start * 1000.0),
                end_ms: Some(end * 1000.0),
                error: None,
                miss_reason: None,
            })
            .collect();
        b
    }

    fn verdict_of(r: &Results, id: &str) -> ClaimVerdict {
        verdicts(r).into_iter().find(|v| v.id == id).unwrap()
    }

    #[test]
    fn every_claim_is_not_measured_on_empty_results() {
        let v = verdicts(&results(vec![]));
        assert_eq!(v.len(), 16);
        assert!(v.iter().all(|v| v.verdict == Verdict::NotMeasured), "{v:#?}");
    }

    #[test]
    fn c1_is_confirmed_by_cached_downloads_and_a_significant_saving_against_its_twin() {
        let v = verdict_of(&results(twin_rebuilds(LOOPBACK, true, 20.0, 30.0)), "C1");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("(5/5)") && v.evidence.contains("ratio 0."), "{}", v.evidence);
        assert!(v.evidence.contains("only in the order of the COPY steps"), "{}", v.evidence);
        // The twin's 10 s extra: its 5 s download, the same build, the rest after the steps.
        assert!(v.evidence.contains("mean gap 10.0 s = download 5.0 s + build 0.0 s + other steps 0.0 s + export and overhead 5.0 s"), "{}", v.evidence);
    }

    #[test]
    fn c1_has_a_caveat_when_the_times_do_not_differ() {
        let v = verdict_of(&results(twin_rebuilds(LOOPBACK, true, 20.0, 20.1)), "C1");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("no significant difference"), "{}", v.evidence);
    }

    #[test]
    fn c1_is_refuted_when_the_good_template_re_downloads() {
        let v = verdict_of(&results(twin_rebuilds(LOOPBACK, false, 20.0, 30.0)), "C1");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
    }

    #[test]
    fn c1_never_compares_times_against_a_variant_that_differs_in_more_than_the_order() {
        let v = verdict_of(&results(edit_rebuilds(true, 20.0, 30.0)), "C1");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("rebuild times not compared") && !v.evidence.contains("ratio"), "{}", v.evidence);
    }

    #[test]
    fn c6_measures_the_skipped_download_on_every_network() {
        let mut recs = vec![cold_good(LOOPBACK, 0.01, 0.3), cold_good("remote-10mbit", 0.01, 3.6)];
        recs.extend(twin_rebuilds(LOOPBACK, true, 20.0, 25.0));
        recs.extend(twin_rebuilds("remote-10mbit", true, 20.0, 25.0));
        let v = verdict_of(&results(recs.clone()), "C6");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("on remote-10mbit") && v.evidence.contains("re-ran it for 5.0 s (n=5"), "{}", v.evidence);
        // Only loopback measured: the slow profile's saving is missing.
        let loopback_only: Vec<BuildRecord> = recs.iter().filter(|r| r.network == LOOPBACK).cloned().collect();
        assert_eq!(verdict_of(&results(loopback_only), "C6").verdict, Verdict::ConfirmedWithCaveat);
        // The alternative: the COPY of the module files costs more than the download it saves.
        let mut costly = vec![cold_good(LOOPBACK, 9.0, 0.3), cold_good("remote-10mbit", 9.0, 3.6)];
        costly.extend(recs.into_iter().filter(|r| r.step != "baseline"));
        let v = verdict_of(&results(costly), "C6");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
    }

    #[test]
    fn c6_is_refuted_when_the_skipped_download_costs_nothing() {
        let mut recs = vec![cold_good(LOOPBACK, 0.01, 0.3)];
        let mut rebuilds = twin_rebuilds(LOOPBACK, true, 20.0, 20.0);
        for r in rebuilds.iter_mut().filter(|r| r.variant == NAIVE_TWIN) {
            r.layers.iter_mut().filter(|l| l.instruction == "RUN go mod download").for_each(|l| l.duration_ms = 0.0);
        }
        for r in rebuilds.iter_mut().filter(|r| r.variant == "static-scratch") {
            r.layers[0].duration_ms = 10.0;
        }
        recs.extend(rebuilds);
        let v = verdict_of(&results(recs), "C6");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
    }

    fn logged(paths: &[(&str, u16)]) -> BuildRecord {
        let mut b = cold_good(LOOPBACK, 0.01, 0.3);
        b.proxy.log = paths
            .iter()
            .map(|(path, status)| ServedRequest { path: path.to_string(), status: *status, kind: "list".into(), ..Default::default() })
            .collect();
        b.proxy.requests = paths.len();
        b
    }

    /// A cold single-stage build whose download layer holds module zips, and `compiled` outputs in the Go build cache.
    fn with_download_layer(mut b: BuildRecord, compiled: u64) -> BuildRecord {
        let layer = |created_by: &str, module_cache_bytes, compiled_outputs| crate::results::LayerContents {
            created_by: created_by.into(),
            files: 10 + compiled_outputs,
            bytes: module_cache_bytes + compiled_outputs * 1000,
            module_cache_bytes,
            build_cache_bytes: compiled_outputs * 1000,
            compiled_outputs,
            ..Default::default()
        };
        b.variant = "naive".into();
        b.inspection = Some(crate::results::Inspection {
            layer_contents: vec![layer("RUN /bin/sh -c go mod download # buildkit", 2_000_000, compiled), layer("RUN /bin/sh -c go build . # buildkit", 0, 300)],
            ..Default::default()
        });
        b
    }

    #[test]
    fn c7_is_confirmed_by_any_standard_library_request_even_unanswered() {
        let modules = [("/github.com/go-chi/chi/v5/@v/list", 200), ("/go.uber.org/zap/@v/v1.23.0.zip", 200)];
        let v = verdict_of(&results(vec![with_download_layer(logged(&modules), 0)]), "C7");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
        assert!(v.evidence.contains("2 requests (0 unanswered), 0 naming a standard-library path"), "{}", v.evidence);
        let with_std = [modules[0], modules[1], ("/net/http/@v/list", 404)];
        let v = verdict_of(&results(vec![with_download_layer(logged(&with_std), 0)]), "C7");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("(1 unanswered), 1 naming a standard-library path (e.g. `net/http`)"), "{}", v.evidence);
    }

    #[test]
    fn c7_is_confirmed_by_compiled_packages_in_the_download_layer_and_never_refuted_without_it() {
        let modules = [("/go.uber.org/zap/@v/v1.23.0.zip", 200)];
        let v = verdict_of(&results(vec![with_download_layer(logged(&modules), 0)]), "C7");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
        assert!(v.evidence.contains("naive's download layer holds 10 files, 2.0 MB in the module cache, 0.0 MB in the Go build cache (0 compiled outputs)"), "{}", v.evidence);
        assert!(v.evidence.contains("its `go build` layer holds 300 compiled outputs"), "{}", v.evidence);
        let v = verdict_of(&results(vec![with_download_layer(logged(&modules), 250)]), "C7");
        assert_eq!(v.verdict, Verdict::Confirmed, "compiled packages in the download layer: {}", v.evidence);
        // The requests alone cannot refute it: the layer's half is untested.
        let v = verdict_of(&results(vec![logged(&modules)]), "C7");
        assert_eq!(v.verdict, Verdict::NotMeasured, "{}", v.evidence);
        assert!(v.evidence.contains("what the download layer writes is not recorded"), "{}", v.evidence);
    }

    #[test]
    fn c7_is_not_measured_without_a_request_log() {
        assert_eq!(verdict_of(&results(vec![cold_good(LOOPBACK, 0.01, 0.3)]), "C7").verdict, Verdict::NotMeasured);
    }

    /// The arg-then-run rebuild after APP_VERSION changed, with the given outcome of the RUN between the ARG and its first use.
    fn arg_rebuild(builder: Builder, between_cached: bool, use_cached: bool) -> BuildRecord {
        let mut steps = vec![("build", "RUN go mod download", true, 0.0, 0.0)];
        if builder == Builder::Legacy {
            steps.push(("build", "ARG APP_VERSION=dev", true, 0.0, 0.0));
        }
        steps.extend([
            ("build", "RUN go env GOOS GOARCH > /tmp/platform.txt", between_cached, 0.0, 0.1),
            ("build", "COPY . .", between_cached, 0.1, 0.2),
            ("build", "RUN CGO_ENABLED=0 go build -ldflags \"-X main.version=${APP_VERSION}\" -o /out/sample .", use_cached, 0.2, 20.0),
        ]);
        staged(ARG_VARIANT, "change-build-arg", "set-version", builder, &steps)
    }

    /// The static-scratch rebuild after APP_VERSION changed: the steps before its use, then the use.
    fn late_rebuild(builder: Builder, earlier_cached: bool) -> BuildRecord {
        // Real records mark the base image's FROM as not cached: it is neither a hit nor a miss.
        let mut steps = vec![("build", "FROM golang:1.23 AS build", false, 0.0, 0.0), ("build", "RUN go mod download", true, 0.0, 0.0), ("build", "COPY . .", earlier_cached, 0.0, 0.1)];
        if builder == Builder::Legacy {
            steps.push(("build", "ARG APP_VERSION=dev", true, 0.1, 0.1));
        }
        steps.push(("build", "RUN CGO_ENABLED=0 go build -ldflags \"-X main.version=${APP_VERSION}\" -o /out/sample .", false, 0.2, 20.0));
        staged(ARG_LATE, "change-build-arg", "set-version", builder, &steps)
    }

    #[test]
    fn x4_says_which_reading_of_first_use_the_outcomes_support() {
        let both = |between_cached: bool| {
            let mut recs = Vec::new();
            for b in [Builder::Buildkit, Builder::Legacy] {
                recs.extend([late_rebuild(b, true), arg_rebuild(b, between_cached, false)]);
            }
            results(recs)
        };
        let v = verdict_of(&both(false), "X4");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("buildkit: ") && v.evidence.contains("legacy: "), "{}", v.evidence);
        assert!(v.evidence.contains("its 2 earlier steps (the declaration's included where the builder records it) cached, the use `RUN ... go build` missed"), "{}", v.evidence);
        assert!(v.evidence.contains("never names the argument, missed") && v.evidence.contains("the first RUN after the ARG"), "{}", v.evidence);
        let v = verdict_of(&both(true), "X4");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        let never = results(vec![arg_rebuild(Builder::Buildkit, true, true), {
            let mut r = late_rebuild(Builder::Buildkit, true);
            r.layers.last_mut().expect("the use").cached = true;
            r
        }]);
        assert_eq!(verdict_of(&never, "X4").verdict, Verdict::Refuted);
    }

    #[test]
    fn x4_needs_the_template_that_declares_the_arg_just_before_its_use() {
        // arg-then-run alone: its explicit use only follows the miss before it, which shows nothing about the use.
        let alone = results(vec![arg_rebuild(Builder::Buildkit, false, false), arg_rebuild(Builder::Legacy, false, false)]);
        let v = verdict_of(&alone, "X4");
        assert_eq!(v.verdict, Verdict::NotMeasured, "{}", v.evidence);
        assert!(v.evidence.contains(ARG_LATE), "{}", v.evidence);
        // An earlier step that misses in the late template refutes it: the argument reached further up.
        let early = results(vec![late_rebuild(Builder::Buildkit, false), arg_rebuild(Builder::Buildkit, false, false)]);
        let v = verdict_of(&early, "X4");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
        assert!(v.evidence.contains("1 of its 2 earlier steps missed (first `COPY . .`)"), "{}", v.evidence);
        // One builder only: a caveat naming the other.
        let one = results(vec![late_rebuild(Builder::Buildkit, true), arg_rebuild(Builder::Buildkit, true, false)]);
        let v = verdict_of(&one, "X4");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("not measured: static-scratch with legacy, arg-then-run with legacy"), "{}", v.evidence);
        // The late template alone on both builders: whether a RUN between misses is untested, so never plainly confirmed.
        let late_only = results(vec![late_rebuild(Builder::Buildkit, true), late_rebuild(Builder::Legacy, true)]);
        let v = verdict_of(&late_only, "X4");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("arg-then-run with buildkit, arg-then-run with legacy"), "{}", v.evidence);
        // The implicit-use caveat keeps naming what was not measured.
        let mut half = vec![late_rebuild(Builder::Buildkit, true)];
        half.extend([arg_rebuild(Builder::Buildkit, false, false), arg_rebuild(Builder::Legacy, false, false)]);
        let v = verdict_of(&results(half), "X4");
        assert!(v.evidence.contains("the first RUN after the ARG") && v.evidence.contains("not measured: static-scratch with legacy"), "{}", v.evidence);
        // No step before the use: nothing shows the earlier steps kept.
        let mut bare = late_rebuild(Builder::Buildkit, true);
        bare.layers.retain(|l| l.instruction.starts_with("FROM") || l.instruction.starts_with(ARG_USE));
        assert_eq!(verdict_of(&results(vec![bare]), "X4").verdict, Verdict::NotMeasured);
    }

    /// A cold parallel-stages build: `parallel` makes the licenses stage run during the build stage; `vet` adds the unneeded stage's step.
    fn stages_build(builder: Builder, parallel: bool, vet: bool) -> BuildRecord {
        let (l0, l1) = if parallel { (1.0, 4.0) } else { (21.0, 24.0) };
        let mut steps = vec![
            ("build", "FROM golang:1.23 AS build", false, 0.0, 0.0),
            ("build", "RUN go mod download", false, 0.1, 1.0),
            ("build", "RUN CGO_ENABLED=0 go build -o /out/sample .", false, 1.0, 21.0),
            ("licenses", "RUN go mod download && mkdir -p /licenses", false, l0, l1),
        ];
        if vet {
            steps.push(("vet", "RUN go vet ./...", false, 24.0, 30.0));
        }
        staged(STAGES_VARIANT, "no-change", "baseline", builder, &steps)
    }

    #[test]
    fn x5_reports_each_builder_and_flips_when_buildkit_runs_stages_one_after_another() {
        let r = results(vec![stages_build(Builder::Buildkit, true, false), stages_build(Builder::Legacy, false, true)]);
        let v = verdict_of(&r, "X5");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("buildkit: the unneeded vet stage skipped; stages ran at once for 3.0 s"), "{}", v.evidence);
        assert!(v.evidence.contains("legacy: the unneeded vet stage built; no two stages' steps overlapped"), "{}", v.evidence);
        let serial = results(vec![stages_build(Builder::Buildkit, false, false), stages_build(Builder::Legacy, false, true)]);
        assert_eq!(verdict_of(&serial, "X5").verdict, Verdict::Refuted);
        let builds_vet = results(vec![stages_build(Builder::Buildkit, true, true), stages_build(Builder::Legacy, false, true)]);
        assert_eq!(verdict_of(&builds_vet, "X5").verdict, Verdict::Refuted);
    }

    #[test]
    fn x5_never_confirms_from_a_variant_outside_its_cell() {
        let mut elsewhere = stages_build(Builder::Buildkit, true, false);
        elsewhere.variant = "fetch-latest".into();
        let r = results(vec![elsewhere, stages_build(Builder::Legacy, false, true)]);
        assert_eq!(verdict_of(&r, "X5").verdict, Verdict::NotMeasured);
    }

    #[test]
    fn c3_is_refuted_by_a_hit_after_a_miss() {
        let ok = build("static-scratch", "s", "x", 1.0, &[("COPY a", false, 0.1), ("RUN b", false, 1.0)], 0);
        let v = verdict_of(&results(vec![ok.clone()]), "C3");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("in the 1 stage builds"), "{}", v.evidence);
        let bad = build("static-scratch", "s", "y", 1.0, &[("COPY a", false, 0.1), ("RUN b", true, 0.0)], 0);
        let v = verdict_of(&results(vec![ok, bad]), "C3");
        assert_eq!(v.verdict, Verdict::Refuted);
        assert!(v.evidence.contains("`RUN b`") && v.evidence.contains("1 of the 2 stage builds"), "{}", v.evidence);
    }

    #[test]
    fn c3_counts_only_stage_builds_with_a_miss_before_their_last_step() {
        let all_cached = build("static-scratch", "s", "x", 1.0, &[("COPY a", true, 0.0), ("RUN b", true, 0.0)], 0);
        let last_missed = build("static-scratch", "s", "y", 1.0, &[("COPY a", true, 0.0), ("RUN b", false, 1.0)], 0);
        let v = verdict_of(&results(vec![all_cached.clone(), last_missed.clone()]), "C3");
        assert_eq!(v.verdict, Verdict::NotMeasured, "neither build could show a hit after a miss: {}", v.evidence);
        assert!(v.evidence.contains("of 2 stage builds"), "{}", v.evidence);
        let early_miss = build("static-scratch", "s", "z", 1.0, &[("COPY a", false, 0.1), ("RUN b", false, 1.0)], 0);
        let v = verdict_of(&results(vec![all_cached, last_missed, early_miss]), "C3");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("in the 1 stage builds of rebuilds that had a miss before their last step (of 3 stage builds"), "{}", v.evidence);
    }

    #[test]
    fn c3_is_judged_per_stage_so_a_later_stage_may_hit_after_an_earlier_one_missed() {
        let mut rec = build("static-scratch", "s", "x", 1.0, &[("COPY a", false, 0.1), ("RUN b", false, 1.0), ("COPY --from=build /out /", true, 0.0), ("USER 1", true, 0.0)], 0);
        for l in &mut rec.layers[2..] {
            l.stage = "final".into();
        }
        let v = verdict_of(&results(vec![rec.clone()]), "C3");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("a later stage still hit after an earlier stage missed") && v.evidence.contains("`COPY --from=build /out /` (final) hit after build missed"), "{}", v.evidence);
        // The same hit inside the stage that missed refutes it.
        for l in &mut rec.layers[2..] {
            l.stage = "build".into();
        }
        assert_eq!(verdict_of(&results(vec![rec]), "C3").verdict, Verdict::Refuted);
    }

    #[test]
    fn c1_has_a_caveat_and_x2_is_inconclusive_with_too_few_repetitions_to_reach_95_percent() {
        let mut two = twin_rebuilds(LOOPBACK, true, 20.0, 40.0);
        let mut twins = 0;
        two.retain(|r| r.variant != NAIVE_TWIN || {
            twins += 1;
            twins <= 2
        });
        assert_eq!(two.iter().filter(|r| r.variant == NAIVE_TWIN).count(), 2, "two rebuilds of the twin");
        let v = verdict_of(&results(two), "C1");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("inconclusive"), "{}", v.evidence);

    }

    #[test]
    fn x2_compares_cache_mount_with_its_twin_without_mounts_only() {
        let step = |variant: &str, wall: f64| build(variant, "edit-go-source", "edit-handler", wall, &[("RUN CGO_ENABLED=0 go build", false, wall)], 0);
        let mount = |wall: f64| build("cache-mount", "edit-go-source", "edit-handler", wall, &[("RUN --mount=type=cache,target=/root/.cache/go-build go build", false, wall)], 0);
        // The good template differs in more than the mounts: it settles nothing about them.
        let mut recs = edit_rebuilds(true, 20.0, 30.0);
        recs.extend([mount(1.0), mount(1.1), mount(1.2)]);
        let v = verdict_of(&results(recs.clone()), "X2");
        assert_eq!(v.verdict, Verdict::NotMeasured, "{}", v.evidence);
        assert!(v.evidence.contains(MOUNT_TWIN), "{}", v.evidence);
        recs.extend((0..5).map(|i| step(MOUNT_TWIN, 20.0 + i as f64 * 0.2)));
        let v = verdict_of(&results(recs.clone()), "X2");
        assert_eq!(v.verdict, Verdict::Confirmed, "3 against 5 can reach 95%: {}", v.evidence);
        let first_mount = recs.iter().position(|r| r.variant == "cache-mount").expect("a cache-mount build");
        recs.remove(first_mount);
        let v = verdict_of(&results(recs.clone()), "X2");
        assert_eq!(v.verdict, Verdict::Inconclusive, "{}", v.evidence);
        assert!(v.evidence.contains("inconclusive: n=2 and n=5") && v.evidence.contains("needs ≥ 4 per side"), "{}", v.evidence);
        // A twin faster than the mounts refutes it.
        let mut slower: Vec<BuildRecord> = (0..5).map(|i| mount(20.0 + i as f64 * 0.2)).collect();
        slower.extend((0..5).map(|i| step(MOUNT_TWIN, 10.0 + i as f64 * 0.1)));
        assert_eq!(verdict_of(&results(slower), "X2").verdict, Verdict::Refuted);
    }

    fn cold_baselines(state: BuildStart) -> Vec<BuildRecord> {
        (0..3)
            .map(|i| {
                let mut b = build("static-scratch", "no-change", "baseline", 20.0, &[("COPY go.mod go.sum ./", false, 0.01 + i as f64 * 0.001), ("RUN go mod download", false, 3.0), ("RUN CGO_ENABLED=0 go build", false, 17.0)], 20);
                b.cache_state = state;
                b
            })
            .collect()
    }

    #[test]
    fn claims_about_cold_builds_refuse_baselines_that_were_not_cold() {
        let cold = results(cold_baselines(BuildStart::Cold));
        let v = verdict_of(&cold, "C6");
        // Without the COPY-order twin the skipped download is not measured: a caveat, not a refusal.
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("took 11 ms (n=3, 10–12)"), "step times under 0.1 s in ms: {}", v.evidence);
        let warm = results(cold_baselines(BuildStart::Warm));
        let v = verdict_of(&warm, "C6");
        assert_eq!(v.verdict, Verdict::NotMeasured, "{}", v.evidence);
        assert!(v.evidence.contains("not built cold"), "{}", v.evidence);
    }

    #[test]
    fn c5_carries_the_chmod_caveat_when_a_mode_change_misses() {
        let steps_all = |cached: bool| vec![("COPY go.mod go.sum ./", true, 0.0), ("COPY . .", cached, 0.0)];
        let mut recs = edit_rebuilds(true, 20.0, 30.0);
        recs.push(build("static-scratch", "touch-only", "touch-sources", 0.1, &steps_all(true), 0));
        recs.push(build("static-scratch", "chmod-source", "chmod-main", 20.0, &steps_all(false), 0));
        let v = verdict_of(&results(recs.clone()), "C5");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert!(v.evidence.contains("mode is part of the key"));
        recs.pop();
        recs.push(build("static-scratch", "chmod-source", "chmod-main", 0.1, &steps_all(true), 0));
        assert_eq!(verdict_of(&results(recs), "C5").verdict, Verdict::Confirmed);
    }

    fn inspected(variant: &str, size: u64, linkage: &str, runtime: RuntimeCheck) -> BuildRecord {
        let mut b = build(variant, "no-change", "baseline", 30.0, &[("RUN go build", false, 30.0)], 10);
        b.image = Some(ImageRecord { id: variant.into(), size_bytes: size, layer_count: 1, user: String::new() });
        b.inspection = Some(Inspection {
            binary: Some(BinaryFacts {
                path: "/app".into(),
                size_bytes: 1,
                linkage: linkage.into(),
                interpreter: (linkage == "dynamic").then(|| "/lib64/ld-linux-x86-64.so.2".into()),
                needed: if linkage == "dynamic" { vec!["libc.so.6".into()] } else { vec![] },
                go_modules: vec![],
            }),
            runtime: Some(runtime),
            ..Default::default()
        });
        b
    }

    fn ran(exit_code: i64, uid: Option<u32>, writes: Option<bool>) -> RuntimeCheck {
        RuntimeCheck {
            method: "m".into(),
            command: vec!["selftest".into()],
            exit_code,
            expected_exit: 0,
            passed: exit_code == 0,
            uid,
            can_write_binary: writes,
            can_write_etc: writes,
            output: if exit_code == 0 { "selftest: ok".into() } else { "exec /sample: no such file or directory".into() },
        }
    }

    #[test]
    fn linkage_start_up_size_and_user_claims_follow_the_inspections() {
        let recs = vec![
            inspected("static-scratch", 15_000_000, "static", ran(0, Some(65532), Some(false))),
            inspected("dynamic-debian", 130_000_000, "dynamic", ran(0, Some(65532), Some(false))),
            inspected("dynamic-scratch", 15_000_000, "dynamic", ran(1, None, None)),
            inspected("naive", 800_000_000, "dynamic", ran(0, Some(0), Some(true))),
        ];
        let r = results(recs);
        for id in ["C8", "C9", "C10", "C11"] {
            let v = verdict_of(&r, id);
            assert_eq!(v.verdict, Verdict::Confirmed, "{id}: {}", v.evidence);
        }
        assert!(verdict_of(&r, "C9").evidence.contains("no such file or directory"));
        let swapped = results(vec![
            inspected("static-scratch", 15_000_000, "dynamic", ran(0, Some(0), Some(true))),
            inspected("dynamic-debian", 130_000_000, "dynamic", ran(0, Some(0), Some(true))),
        ]);
        assert_eq!(verdict_of(&swapped, "C8").verdict, Verdict::Refuted);
    }

    fn sized(dynamic_scratch: Option<i64>, static_size: u64) -> Results {
        let mut recs = vec![
            inspected("static-scratch", static_size, "static", ran(0, Some(65532), Some(false))),
            inspected("dynamic-debian", 130_000_000, "dynamic", ran(0, Some(65532), Some(false))),
            inspected("naive", 800_000_000, "dynamic", ran(0, Some(0), Some(true))),
        ];
        if let Some(exit) = dynamic_scratch {
            recs.push(inspected("dynamic-scratch", 15_100_000, "dynamic", ran(exit, None, None)));
        }
        results(recs)
    }

    #[test]
    fn c10_tells_static_linking_apart_from_the_empty_base() {
        let v = verdict_of(&sized(Some(1), 15_000_000), "C10");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("dynamic-scratch) is 15.1 MB") && v.evidence.contains("does not run there (exit 1)"), "{}", v.evidence);
        // The alternative: a dynamic binary runs in scratch just as well, so the base image alone makes the image tiny.
        let v = verdict_of(&sized(Some(0), 15_000_000), "C10");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
        assert!(v.evidence.contains("static linking is not what makes the image tiny"), "{}", v.evidence);
        let v = verdict_of(&sized(None, 15_000_000), "C10");
        assert_eq!(v.verdict, Verdict::ConfirmedWithCaveat, "{}", v.evidence);
        assert_eq!(verdict_of(&sized(Some(1), 150_000_000), "C10").verdict, Verdict::Refuted);
    }

    #[test]
    fn verdicts_serialise_with_kebab_case_names() {
        let json = serde_json::to_string(&verdicts(&results(vec![]))[0]).unwrap();
        assert_eq!(json, r#"{"id":"C1","verdict":"not-measured","evidence":"the results have no edit-go-source rebuild of static-scratch or layered"}"#);
    }

    fn bump_build(served: &str) -> BuildRecord {
        let mut b = build("static-scratch", "bump-dependency", "bump-toml", 20.0, &[("COPY go.mod go.sum ./", false, 0.0), ("RUN go mod download", false, 1.0), ("COPY . .", false, 0.1), ("RUN CGO_ENABLED=0 go build", false, 17.0)], 2);
        b.notes = vec!["github.com/BurntSushi/toml v1.2.0 -> v1.3.2".into()];
        b.proxy.modules = vec![served.to_string()];
        b
    }

    #[test]
    fn c2_needs_the_proxy_to_serve_the_bumped_version_itself() {
        let v = verdict_of(&results(vec![bump_build("github.com/BurntSushi/toml@v1.3.2")]), "C2");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        let v = verdict_of(&results(vec![bump_build("github.com/BurntSushi/toml@v1.2.0")]), "C2");
        assert_eq!(v.verdict, Verdict::Refuted, "another version of the module is not the bump: {}", v.evidence);
        assert!(v.evidence.contains("toml@v1.2.0 but not github.com/BurntSushi/toml@v1.3.2"), "{}", v.evidence);
    }

    fn latest_build(step: &str, cached: bool, version: &str) -> BuildRecord {
        let mut b = build("fetch-latest", "upstream-publishes-new-version", step, 5.0, &[("RUN go mod download -json github.com/BurntSushi/toml@latest", cached, 1.0)], usize::from(!cached));
        b.inspection = Some(crate::results::Inspection { files: vec![("/toml-latest.json".into(), format!("{{\"Version\": \"{version}\"}}"))], ..Default::default() });
        b
    }

    #[test]
    fn c4_says_stale_only_when_a_stale_layer_was_observed() {
        let stale = results(vec![latest_build("baseline", false, "v1.2.0"), latest_build("publish-toml-v1.3.2", true, "v1.2.0")]);
        let v = verdict_of(&stale, "C4");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.ends_with("is stale"), "{}", v.evidence);
        let fresh = results(vec![latest_build("baseline", false, "v1.2.0"), latest_build("publish-toml-v1.3.2", false, "v1.3.2")]);
        let v = verdict_of(&fresh, "C4");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
        assert!(!v.evidence.contains("is stale") && v.evidence.contains("no stale"), "{}", v.evidence);
    }

    fn probed(variant: &str, uid: u32, binary: bool, etc: bool) -> BuildRecord {
        let mut b = build(variant, "no-change", "baseline", 20.0, &[("RUN go build", false, 17.0)], 0);
        let runtime = crate::results::RuntimeCheck {
            method: "probe".into(),
            command: vec!["selftest".into()],
            exit_code: 0,
            expected_exit: 0,
            passed: true,
            uid: Some(uid),
            can_write_binary: Some(binary),
            can_write_etc: Some(etc),
            output: String::new(),
        };
        b.inspection = Some(crate::results::Inspection { runtime: Some(runtime), ..Default::default() });
        b
    }

    #[test]
    fn c11_checks_what_root_may_write_too() {
        let v = verdict_of(&results(vec![probed("naive", 0, true, true), probed("static-scratch", 65532, false, false)]), "C11");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        let v = verdict_of(&results(vec![probed("naive", 0, true, false), probed("static-scratch", 65532, false, false)]), "C11");
        assert_eq!(v.verdict, Verdict::Refuted, "root that cannot write /etc does not show the claim: {}", v.evidence);
    }

    #[test]
    fn c6_weighs_the_skipped_download_against_the_measured_rebuild_gap() {
        let mut recs = vec![cold_good(LOOPBACK, 0.01, 0.3), cold_good("remote-10mbit", 0.01, 3.6)];
        recs.extend(twin_rebuilds(LOOPBACK, true, 20.0, 25.0));
        recs.extend(twin_rebuilds("remote-10mbit", true, 20.0, 25.0));
        let v = verdict_of(&results(recs), "C6");
        assert_eq!(v.verdict, Verdict::Confirmed, "{}", v.evidence);
        assert!(v.evidence.contains("a gap of 5.0 s of which the download is 100%"), "{}", v.evidence);
        // The twin's rebuild is 20 s slower, and its 5 s download explains a quarter of it: not the saving.
        let mut recs = vec![cold_good(LOOPBACK, 0.01, 0.3), cold_good("remote-10mbit", 0.01, 3.6)];
        recs.extend(twin_rebuilds(LOOPBACK, true, 20.0, 40.0));
        recs.extend(twin_rebuilds("remote-10mbit", true, 20.0, 40.0));
        let v = verdict_of(&results(recs), "C6");
        assert_eq!(v.verdict, Verdict::Refuted, "{}", v.evidence);
    }
}
