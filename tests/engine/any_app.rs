//! layerbench on an app that is not the sample, through the `layerbench` binary as a user runs it: templates outside `dockerfiles/`, a target stage, build arguments, a configured probe, shipped scenarios that find the app's files by role, both builders; and a run that goes on past a template that fails and a probe that fails.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use common::{cached, record, tree_digest};

use std::path::{Path, PathBuf};
use std::process::Command;

use layerbench::results::{Builder, Results};

const PROXY_PORT: &str = "48161";

fn other_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/other-app")
}


/// Runs the binary with `args` from `cwd`; returns its exit code and output.
fn layerbench(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench")).args(args).current_dir(cwd).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}



#[tokio::test]
async fn an_app_unlike_the_sample_runs_with_two_templates_two_shipped_scenarios_and_both_builders() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    let app = other_app();
    let before = tree_digest(&app);
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("run");
    // Paths relative to the current folder, as a user types them from the app's parent.
    let (code, text) = layerbench(
        app.parent().unwrap(),
        &[
            "run",
            "--app", "other-app",
            "--dockerfile", "other-app/build/service.Dockerfile",
            "--dockerfile", "flat=other-app/build/single.Dockerfile",
            "--target", "final",
            "--build-arg", "GREETING=hi",
            "--probe", "check",
            "--scenario", "edit-go-source",
            "--scenario", "touch-only",
            "--builder", "both",
            "--repetitions", "1",
            "--proxy-port", PROXY_PORT,
            "--out", out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(tree_digest(&app), before, "the app folder was modified");
    let results = Results::read(&out_dir.join("results.json")).unwrap();
    assert!(results.complete);
    assert_eq!(results.schema_version, layerbench::results::SCHEMA_VERSION);
    assert_eq!(results.records.len(), 2 * 2 * 2 * 2, "two templates × two one-step scenarios × two builders, baseline and step");
    for r in &results.records {
        assert_eq!(r.outcome, layerbench::results::Outcome::Ok, "{} {} {:?} {}: {:?}", r.variant, r.scenario, r.builder, r.step, r.error);
        let inspection = r.inspection.as_ref().expect("every image is inspected");
        assert_eq!(inspection.error, None);
        let probe = inspection.runtime.as_ref().expect("the configured probe ran");
        assert!(probe.passed && probe.command == ["check"], "{probe:?}");
        assert!(probe.output.starts_with("hi, other "), "the build argument reached the build: {}", probe.output);
        assert_eq!(r.build_args.get("GREETING").map(String::as_str), Some("hi"));
    }
    let names: Vec<&str> = results.options.templates.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["service", "flat"]);
    assert_eq!(results.options.templates[0].dockerfile, "build/service.Dockerfile");
    assert_eq!(results.options.templates[0].target.as_deref(), Some("final"));

    for builder in [Builder::Buildkit, Builder::Legacy] {
        // The target stops the build at `final`: the debug stage after it is never built.
        let base = record(&results, "service", builder, "baseline");
        assert!(base.layers.iter().all(|l| l.stage != "debug"), "{builder:?}: {:#?}", base.layers);
        assert_eq!(base.image.as_ref().unwrap().user, "10001:10001");
        assert_eq!(base.inspection.as_ref().unwrap().binary.as_ref().unwrap().linkage, "static");
        // `{main_go}` found cmd/server/main.go: the edit misses COPY . . and keeps the download.
        let edit = record(&results, "service", builder, "edit-handler");
        assert!(cached(edit, "RUN go mod download"), "{builder:?}");
        assert!(!cached(edit, "COPY . ."), "{builder:?}");
        assert_eq!(edit.proxy.requests, 0, "{builder:?}");
        let flat = record(&results, "flat", builder, "edit-handler");
        assert!(!cached(flat, "RUN go mod download"), "{builder:?}: the flat template copies everything first");
        // Files touched, their bytes unchanged: every step stays cached.
        for r in results.records.iter().filter(|r| r.builder == builder && r.scenario == "touch-only" && r.step != "baseline") {
            assert!(r.layers.iter().filter(|l| !l.is_base_image()).all(|l| l.cached), "{builder:?} {}: {:#?}", r.variant, r.layers);
        }
    }
    // One vocabulary: a step has the same instruction and line whichever builder ran it.
    for variant in ["service", "flat"] {
        let bk = record(&results, variant, Builder::Buildkit, "baseline");
        let legacy = record(&results, variant, Builder::Legacy, "baseline");
        for l in &bk.layers {
            let line = l.line.unwrap_or_else(|| panic!("{variant}: `{}` ({}) has no line", l.instruction, l.vertex));
            let twin = legacy.layers.iter().find(|x| x.line == Some(line)).unwrap_or_else(|| panic!("{variant}: the legacy builder has no step on line {line}"));
            assert_eq!((&twin.instruction, &twin.stage), (&l.instruction, &l.stage));
            assert_ne!(twin.vertex, l.vertex, "each builder's own label is kept apart");
        }
    }
    assert!(bk_instruction_keeps_build_args_unexpanded(&results));
    assert!(out_dir.join("REPORT.md").is_file() && out_dir.join("summary.csv").is_file());
}

/// BuildKit names the build step with `${GREETING}` expanded; the record keeps the Dockerfile's text.
fn bk_instruction_keeps_build_args_unexpanded(results: &Results) -> bool {
    let r = record(results, "flat", Builder::Buildkit, "baseline");
    let build = r.layers.iter().find(|l| l.instruction.starts_with("RUN go build")).unwrap();
    build.instruction.contains("${GREETING}") && build.vertex.contains("main.greeting=hi")
}

#[tokio::test]
async fn a_template_that_fails_and_a_probe_that_fails_are_recorded_and_the_run_completes_with_exit_1() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    let app = other_app();
    let before = tree_digest(&app);
    let templates = tempfile::tempdir().unwrap();
    let broken = templates.path().join("broken.Dockerfile");
    std::fs::write(&broken, "FROM golang:1.23 AS final\nWORKDIR /src\nCOPY go.mod ./\nRUN echo about to fail && false\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = layerbench(
        &app,
        &[
            "run",
            "--dockerfile", broken.to_str().unwrap(),
            "--dockerfile", "build/service.Dockerfile",
            "--target", "final",
            "--probe", "not-a-command",
            "--scenario", "no-change",
            "--repetitions", "1",
            "--proxy-port", PROXY_PORT,
            "--out", out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert_eq!(tree_digest(&app), before, "the app folder was modified");
    let results = Results::read(&out.path().join("results.json")).unwrap();
    assert!(results.complete, "the run went on past the failures");
    let failed = record(&results, "broken", Builder::Buildkit, "baseline");
    assert_eq!(failed.outcome, layerbench::results::Outcome::Failed);
    let error = failed.error.as_deref().unwrap();
    assert!(error.contains("RUN echo about to fail && false"), "the error names the failing step: {error}");
    assert_eq!(results.records.iter().filter(|r| r.variant == "broken").count(), 1, "the failed cell skips its steps");
    assert!(
        !failed.notes.iter().any(|n| n.contains("`.dockerfile.")),
        "through the build's session a Dockerfile from outside the app travels apart from the context, as the CLI sends it: {:?}",
        failed.notes
    );
    for step in ["baseline", "rebuild"] {
        let r = record(&results, "service", Builder::Buildkit, step);
        assert_eq!(r.outcome, layerbench::results::Outcome::Ok, "{:?}", r.error);
        let probe = r.inspection.as_ref().unwrap().runtime.as_ref().unwrap();
        assert!(!probe.passed && probe.exit_code == 2, "{probe:?}");
        assert!(probe.output.contains("unknown argument"), "{}", probe.output);
    }
    assert!(out.path().join("REPORT.md").is_file(), "the report is written after failures");
    assert!(text.contains("FAILED broken"), "{text}");
}

fn real_service() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-service")
}

/// A service shaped as real repositories publish one, its Dockerfile untouched: a `# syntax=` line, `make build`
/// in golang:1.23-bookworm, a distroless final stage, the main package under cmd/, no go.sum. Every shipped
/// scenario runs (BuildKit, whose frontend the directive names) and no build or step fails: what the app lacks is
/// skipped with a note.
#[tokio::test]
async fn a_service_as_its_repository_holds_it_runs_every_shipped_scenario() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    let app = real_service();
    let before = tree_digest(&app);
    // The stand-ins are made by the run itself, as for a new user: none is left from an earlier test.
    for image in ["golang:1.23-bookworm", "gcr.io/distroless/base:latest", "gcr.io/distroless/base:nonroot", "gcr.io/distroless/base-debian12:nonroot"] {
        if engine.image(image).await.unwrap().is_some_and(|f| f.labels.get("io.layerbench.stand-in").is_some_and(|v| v == "true")) {
            engine.remove_image(image).await.unwrap();
        }
    }
    let out = tempfile::tempdir().unwrap();

    // Without --frontend builtin the unreachable frontend is named in one line, with its way out.
    let (code, text) = layerbench(&app, &["run", "--dockerfile", "Dockerfile", "--scenario", "no-change", "--repetitions", "1", "--proxy-port", PROXY_PORT, "--out", out.path().join("syntax").to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("docker/dockerfile:1.3") && text.contains("line 1") && text.contains("--frontend builtin"), "{text}");

    let run_dir = out.path().join("run");
    let (code, text) = layerbench(
        &app,
        &[
            "run", "--dockerfile", "Dockerfile", "--frontend", "builtin", "--cache", "warm",
            "--repetitions", "1", "--probe", "ping", "--proxy-port", PROXY_PORT, "--out", run_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(tree_digest(&app), before, "the app folder was modified");
    let results = Results::read(&run_dir.join("results.json")).unwrap();
    let scenarios: std::collections::BTreeSet<&str> = results.records.iter().map(|r| r.scenario.as_str()).collect();
    let shipped = layerbench::scenario::select(&layerbench::paths::scenarios_dir(), &[]).unwrap();
    let for_any_app: std::collections::BTreeSet<&str> = shipped.iter().filter(|s| !s.sample_only).map(|s| s.name.as_str()).collect();
    assert!(for_any_app.len() >= 9, "{for_any_app:?}");
    assert_eq!(scenarios, for_any_app, "every shipped scenario that is not for the sample alone ran");
    for r in &results.records {
        assert_eq!(r.outcome, layerbench::results::Outcome::Ok, "{} {:?} {}: {:?} {:?}", r.scenario, r.builder, r.step, r.error, r.error_log);
        assert!(r.notes.iter().any(|n| n.contains("# syntax")), "every build notes the dropped directive: {:?}", r.notes);
        let probe = r.inspection.as_ref().and_then(|i| i.runtime.as_ref()).expect("the probe ran");
        assert!(probe.passed && probe.output.trim() == "pong ping", "the binary runs in the distroless stand-in: {probe:?}");
        assert_eq!(r.image.as_ref().unwrap().user, "65532");
    }
    // The stand-ins were made by the first run, before its first build, and each run lists them.
    let first = Results::read(&out.path().join("syntax/results.json")).unwrap();
    for (results, action) in [(&first, "built"), (&results, "present")] {
        for name in ["golang:1.23-bookworm", "gcr.io/distroless/base:nonroot"] {
            let b = results.base_images.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("{name} is not in {:?}", results.base_images));
            assert!(b.provenance.starts_with("local stand-in") && b.action == action, "{b:?}");
        }
    }
    let report = std::fs::read_to_string(run_dir.join("REPORT.md")).unwrap();
    assert!(report.contains("`gcr.io/distroless/base:nonroot`"), "REPORT.md lists the stand-in");
    // A bump has no dependency to bump here: skipped with a note, never failed.
    let bump = results.records.iter().find(|r| r.scenario == "bump-first-dependency" && r.step != "baseline").expect("the bump ran");
    assert!(bump.notes.iter().any(|n| n.contains("skipped the change")), "{:?}", bump.notes);
}

#[tokio::test]
async fn a_template_whose_base_image_has_no_stand_in_fails_before_it_builds_and_says_how_to_provide_it() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    let app = other_app();
    let templates = tempfile::tempdir().unwrap();
    let elsewhere = templates.path().join("elsewhere.Dockerfile");
    std::fs::write(&elsewhere, "FROM registry.example.org/team/go-builder:7 AS build\nRUN go version\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = layerbench(&app, &["run", "--dockerfile", elsewhere.to_str().unwrap(), "--scenario", "no-change", "--repetitions", "1", "--proxy-port", PROXY_PORT, "--out", out.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    let results = Results::read(&out.path().join("results.json")).unwrap();
    let failed = record(&results, "elsewhere", Builder::Buildkit, "baseline");
    assert_eq!(failed.outcome, layerbench::results::Outcome::Failed);
    let error = failed.error.as_deref().unwrap();
    assert!(error.contains("registry.example.org/team/go-builder:7") && error.contains("docker load") && error.contains("layerbench images --pull"), "{error}");
    assert!(failed.layers.is_empty() && failed.wall_ms < 5_000.0, "nothing was built: {:?}", failed.layers);
}
