//! Claim verdicts: a pure function from a results file to a verdict with one line of evidence for every claim in CLAIMS.md.

use serde::{Deserialize, Serialize};

use crate::analysis::stats::Summary;
use crate::results::{BuildRecord, BuildStart, Builder, LayerRecord, Results};

mod builder;
mod cache;
mod image;

pub use builder::STAGES_VARIANT;
use builder::{x4, x5};
use cache::{c1, c2, c3, c4, c5, c6, c7, x1, x2, x3};
use image::{c8, c9, c10, c11};

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

/// Every claim's judge, in CLAIMS.md order.
const JUDGES: [(&str, Judge); 16] = [
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

/// The claims whose verdict reads what a cold image's Go layers hold: a run reads those (exporting the image, seconds
/// for a large one) only when it is to settle one of them.
pub const NEED_LAYER_CONTENTS: [&str; 1] = ["C7"];

/// Every claim's id, in CLAIMS.md order.
pub fn claim_ids() -> impl Iterator<Item = &'static str> {
    JUDGES.iter().map(|(id, _)| *id)
}

/// Every claim, in CLAIMS.md order.
pub fn verdicts(results: &Results) -> Vec<ClaimVerdict> {
    let r = Records(results);
    JUDGES
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

#[cfg(test)]
mod tests {
    use super::*;
    use super::builder::{ARG_LATE, ARG_USE, ARG_VARIANT};
    use super::cache::{MOUNT_TWIN, NAIVE_TWIN};
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
