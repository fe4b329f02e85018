//! Why a step missed, against the real engine with both builders: one cell per builder walks through a cold baseline, a source edit, a build-argument change, a Dockerfile edit and a base-image switch, on the host's engine and on an owned Docker 26.1 engine; and each engine's own `docker build` misses the same steps.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

mod common;

use std::path::{Path, PathBuf};
use common::EngineUnderTest;
use layerbench::engine::Builder;
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::results::{BuildRecord, LayerRecord, MissKind, MissReason};
use layerbench::scenario::Scenario;

const PROXY_PORT: u16 = 48171;
const CLI_PROXY_PORT: u16 = 48172;

fn why_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/why-app")
}

/// The steps, in order: each makes the next build miss for one reason.
const SCENARIO: &str = r#"
name = "why"
description = "one miss reason per step"

[[step]]
name = "edit-source"
change = [{ kind = "append", file = "main.go", text = "\n// edited ({nonce})\n" }]

[[step]]
name = "set-version"
change = [{ kind = "build-arg", name = "APP_VERSION", value = "v2" }]

[[step]]
name = "edit-download"
change = [{ kind = "dockerfile-replace", pattern = "RUN go mod download", with = "RUN go mod download -x" }]

[[step]]
name = "switch-base"
change = [{ kind = "build-arg", name = "BASE", value = "golang:1.23" }]
"#;

fn layer<'a>(r: &'a BuildRecord, prefix: &str) -> &'a LayerRecord {
    r.layers
        .iter()
        .find(|l| l.instruction.starts_with(prefix))
        .unwrap_or_else(|| panic!("{:?} on {} {}: no step `{prefix}` in {:#?}", r.builder, r.engine, r.step, r.layers))
}

/// The reason of an executed step (panics, naming the build, when it was cached or has none).
fn reason<'a>(r: &'a BuildRecord, prefix: &str) -> &'a MissReason {
    let l = layer(r, prefix);
    assert!(!l.cached, "{:?} on {} {}: `{prefix}` was cached", r.builder, r.engine, r.step);
    l.miss_reason.as_ref().unwrap_or_else(|| panic!("{:?} on {} {}: `{prefix}` executed with no reason", r.builder, r.engine, r.step))
}

/// The Dockerfile line of the instruction starting with `prefix`.
fn line_of(prefix: &str) -> usize {
    let text = std::fs::read_to_string(why_app().join("dockerfiles/why.Dockerfile")).unwrap();
    text.lines().position(|l| l.starts_with(prefix)).map(|i| i + 1).unwrap_or_else(|| panic!("no line `{prefix}`"))
}

#[tokio::test]
async fn every_executed_step_says_why_it_missed_with_both_builders() {
    let _guard = common::engine_lock();
    let builders = [Builder::Buildkit, Builder::Legacy];
    let scenario = Scenario::parse(SCENARIO, Path::new("(miss_reasons.rs)")).unwrap();
    for on in &common::engines_under_test().await {
        let name = on.label();
        // On Docker 26 BuildKit alone: its legacy builder's reasons are the same code, checked against its CLI below.
        let builders: &[Builder] = if on.name == "default" { &builders } else { &builders[..1] };
        let results = common::run_cells_on(&on.name, on.engine.clone(), &why_app(), &["why"], vec![scenario.clone()], builders, PROXY_PORT).await;
        println!("{}", layerbench::table::cell_tables(&results)); // shown when an assertion fails
        for cell in 1..=builders.len() {
            on.engine.remove_image(&format!("layerbench/why:{}-{cell}", results.run_id)).await.unwrap();
        }
        for &builder in builders {
            let build = |step: &str| {
                let r = common::record(&results, "why", builder, step);
                assert_eq!(r.outcome, "ok", "{builder:?} on {name} {step}: {:?}", r.error);
                r
            };

            // A cold baseline: each stage's first executed step is `cold`, every later one follows it; no cached step has a reason.
            let baseline = build("baseline");
            for stage in ["build", "final"] {
                let executed: Vec<&LayerRecord> = baseline.layers.iter().filter(|l| l.stage == stage && !l.cached && !l.is_base_image()).collect();
                assert!(executed.len() >= 2, "{builder:?} on {name}: stage {stage} ran {executed:#?}");
                assert_eq!(executed[0].miss_reason.as_ref().map(|m| m.kind), Some(MissKind::Cold), "{builder:?} on {name} {stage}: {:#?}", executed[0]);
                for l in &executed[1..] {
                    let m = l.miss_reason.as_ref().expect("a reason");
                    assert_eq!((m.kind, m.line), (MissKind::Follows, executed[0].line), "{builder:?} on {name} {}: {m}", l.instruction);
                }
            }
            for r in &results.records {
                assert!(r.layers.iter().all(|l| !l.cached || l.miss_reason.is_none()), "{builder:?} on {name} {}: a cached step with a reason", r.step);
            }

            // A .go edit: `COPY . .` names the file; the build follows it; the download stays cached.
            let edit = build("edit-source");
            assert!(layer(edit, "RUN go mod download").cached, "{builder:?} on {name}: the download ran after a .go edit");
            let files = reason(edit, "COPY . .");
            assert_eq!((files.kind, files.detail.as_str(), files.line), (MissKind::Files, "main.go (content)", Some(line_of("COPY . ."))), "{builder:?} on {name}");
            let go_build = reason(edit, "RUN CGO_ENABLED=0 go build");
            assert_eq!((go_build.kind, go_build.line), (MissKind::Follows, Some(line_of("COPY . ."))), "{builder:?} on {name}: {go_build}");
            let copy_from = reason(edit, "COPY --from=build");
            assert_eq!(copy_from.kind, MissKind::Follows, "{builder:?} on {name}: {copy_from}");
            assert!(copy_from.detail.starts_with("stage `build`"), "{builder:?} on {name}: {copy_from}");

            // A build argument declared after `COPY . .`: only the RUN after its ARG misses, naming the ARG line.
            let version = build("set-version");
            let ran: Vec<&str> = version.layers.iter().filter(|l| !l.cached && !l.is_base_image()).map(|l| l.instruction.as_str()).collect();
            assert_eq!(ran.len(), 1, "{builder:?} on {name}: only the RUN after the ARG runs (a global ARG is no step): {ran:?}");
            let arg = reason(version, "RUN CGO_ENABLED=0 go build");
            assert_eq!((arg.kind, arg.line), (MissKind::BuildArg, Some(line_of("ARG APP_VERSION"))), "{builder:?} on {name}: {arg}");
            assert_eq!(arg.detail, format!("`APP_VERSION` (ARG line {}) changed: `dev` → `v2`", line_of("ARG APP_VERSION")), "{builder:?} on {name}");

            // A Dockerfile edit of the download step: it is named, with what it was.
            let edited = build("edit-download");
            assert!(layer(edited, "COPY go.mod go.sum").cached, "{builder:?} on {name}");
            let ins = reason(edited, "RUN go mod download -x");
            assert_eq!((ins.kind, ins.line), (MissKind::Instruction, Some(line_of("RUN go mod download"))), "{builder:?} on {name}: {ins}");
            assert!(ins.detail.ends_with("changed, was `RUN go mod download`"), "{builder:?} on {name}: {ins}");
            assert!(layer(edited, "RUN echo").cached, "{builder:?} on {name}: the final stage's own step ran");

            // The global ARG BASE switches the final stage's image: its first step names both; the build stage is untouched.
            let switched = build("switch-base");
            assert!(switched.layers.iter().filter(|l| l.stage == "build").all(|l| l.cached || l.is_base_image()), "{builder:?} on {name}: {:#?}", switched.layers);
            let base = reason(switched, "COPY go.mod /etc/");
            assert_eq!((base.kind, base.line), (MissKind::BaseImage, Some(line_of("FROM ${BASE}"))), "{builder:?} on {name}: {base}");
            assert!(base.detail.contains("resolves to golang:1.23") && base.detail.contains("was debian:bookworm-slim"), "{builder:?} on {name}: {base}");
            for later in ["RUN echo", "COPY --from=build"] {
                let m = reason(switched, later);
                assert_eq!((m.kind, m.line), (MissKind::Follows, Some(line_of("COPY go.mod /etc/"))), "{builder:?} on {name} {later}: {m}");
            }
        }
    }
}

/// The engine's own `docker build` of `dir` with the build arguments; returns the output (both streams).
fn cli_build(on: &EngineUnderTest, builder: Builder, dir: &Path, tag: &str, args: &[(&str, &str)]) -> String {
    let mut cmd = on.cli(&[dir.to_path_buf()]);
    cmd.env("DOCKER_BUILDKIT", if builder == Builder::Buildkit { "1" } else { "0" });
    cmd.args(["build", "--network", "host", "-f"]).arg(dir.join("dockerfiles/why.Dockerfile")).args(["-t", tag]);
    if builder == Builder::Buildkit {
        cmd.arg("--progress=plain");
    }
    let proxy = format!("GOPROXY=http://127.0.0.1:{CLI_PROXY_PORT}");
    cmd.args(["--build-arg", &proxy, "--build-arg", "GOSUMDB=off"]);
    for (k, v) in args {
        cmd.args(["--build-arg", &format!("{k}={v}")]);
    }
    let out = cmd.arg(dir).output().expect("run the docker CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "docker build on {} failed:\n{text}", on.label());
    text
}

/// Whether the CLI's output shows the step starting with `prefix` as cached.
fn cli_cached(builder: Builder, output: &str, prefix: &str) -> bool {
    match builder {
        Builder::Legacy => {
            let start = output.lines().position(|l| l.starts_with("Step ") && l.split_once(" : ").is_some_and(|(_, t)| t.starts_with(prefix)));
            let start = start.unwrap_or_else(|| panic!("no legacy step `{prefix}` in:\n{output}"));
            output.lines().skip(start + 1).take_while(|l| !l.starts_with("Step ")).any(|l| l.trim() == "---> Using cache")
        }
        Builder::Buildkit => {
            let id = output
                .lines()
                .find_map(|l| l.split_once("] ").filter(|(_, t)| t.starts_with(prefix)).and_then(|(head, _)| head.split_whitespace().next()))
                .unwrap_or_else(|| panic!("no BuildKit step `{prefix}` in:\n{output}"));
            output.lines().any(|l| l.trim() == format!("{id} CACHED"))
        }
    }
}

/// The reasons the harness gives are the CLI's misses: with the legacy CLI a
/// changed build argument misses only the RUN after its ARG; with the BuildKit
/// CLI a switched base image misses the final stage from its first step on
/// and keeps the build stage.
// Several threads: the CLI blocks one while the module proxy answers its builds on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_cli_misses_the_steps_the_reasons_name() {
    let _guard = common::engine_lock();
    let store = layerbench::paths::store_dir();
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, CLI_PROXY_PORT)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(why_app()).min_depth(1) {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.path().strip_prefix(why_app()).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    // A line unique to this run keeps the CLI's cache keys its own from `COPY go.mod` on.
    let go_mod = dir.path().join("go.mod");
    let text = std::fs::read_to_string(&go_mod).unwrap();
    std::fs::write(&go_mod, format!("{text}// miss_reasons test {} {}\n", std::process::id(), layerbench::paths::new_run_id())).unwrap();
    let tag = format!("layerbench-test/why-cli:{}", std::process::id());
    for on in &common::engines_under_test().await {
        let _remove = RemoveOnDrop(on, tag.clone());
        let name = on.label();
        let legacy = Builder::Legacy;
        cli_build(on, legacy, dir.path(), &tag, &[]);
        let again = cli_build(on, legacy, dir.path(), &tag, &[("APP_VERSION", "v2")]);
        assert!(cli_cached(legacy, &again, "COPY . ."), "legacy on {name}: `COPY . .` ran:\n{again}");
        assert!(cli_cached(legacy, &again, "ARG APP_VERSION"), "legacy on {name}: the ARG step itself ran:\n{again}");
        assert!(!cli_cached(legacy, &again, "RUN CGO_ENABLED=0 go build"), "legacy on {name}: the RUN after the changed ARG was cached:\n{again}");

        let bk = Builder::Buildkit;
        cli_build(on, bk, dir.path(), &tag, &[]);
        let switched = cli_build(on, bk, dir.path(), &tag, &[("BASE", "golang:1.23")]);
        for step in ["COPY . .", "RUN CGO_ENABLED=0 go build"] {
            assert!(cli_cached(bk, &switched, step), "BuildKit on {name}: `{step}` of the build stage ran after the base switch:\n{switched}");
        }
        for step in ["COPY go.mod /etc/", "RUN echo"] {
            assert!(!cli_cached(bk, &switched, step), "BuildKit on {name}: the final stage's `{step}` was cached on a new base:\n{switched}");
        }
    }

    proxy.stop().await;
}

/// Removes the CLI's tagged image when the test ends, failed or not.
struct RemoveOnDrop<'a>(&'a EngineUnderTest, String);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.cli(&[]).args(["rmi", "-f", &self.1]).output();
    }
}
