//! Why a step missed, against the real engine with both builders: one cell per builder walks through a cold baseline, a source edit, a build-argument change, a Dockerfile edit and a base-image switch, on the host's engine and on an owned Docker 26.1 engine; and each engine's own `docker build` misses the same steps. Real templates' instructions (heredocs, `COPY --link --chmod --chown`, bind and secret mounts, `ADD` of a URL) are compared with the CLI too: on Docker 26 with BuildKit, and what the legacy builder supports on the host's engine.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

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
                assert_eq!(r.outcome, layerbench::results::Outcome::Ok, "{builder:?} on {name} {step}: {:?}", r.error);
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
            let go_build = reason(edit, "RUN CGO_ENABLED=0 go list");
            assert_eq!((go_build.kind, go_build.line), (MissKind::Follows, Some(line_of("COPY . ."))), "{builder:?} on {name}: {go_build}");
            let copy_from = reason(edit, "COPY --from=build");
            assert_eq!(copy_from.kind, MissKind::Follows, "{builder:?} on {name}: {copy_from}");
            assert!(copy_from.detail.starts_with("stage `build`"), "{builder:?} on {name}: {copy_from}");

            // A build argument declared after `COPY . .`: only the RUN after its ARG misses, naming the ARG line.
            let version = build("set-version");
            let ran: Vec<&str> = version.layers.iter().filter(|l| !l.cached && !l.is_base_image()).map(|l| l.instruction.as_str()).collect();
            assert_eq!(ran.len(), 1, "{builder:?} on {name}: only the RUN after the ARG runs (a global ARG is no step): {ran:?}");
            let arg = reason(version, "RUN CGO_ENABLED=0 go list");
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

/// The engine's own `docker build` of the why template in `dir` with the build arguments; returns the output (both streams).
fn cli_build(on: &EngineUnderTest, builder: Builder, dir: &Path, tag: &str, args: &[(&str, &str)]) -> String {
    let mut options = vec!["--network".to_string(), "host".into(), "-f".into(), dir.join("dockerfiles/why.Dockerfile").display().to_string(), "-t".into(), tag.into()];
    let fixed = [format!("GOPROXY=http://127.0.0.1:{CLI_PROXY_PORT}"), "GOSUMDB=off".into()];
    for arg in fixed.into_iter().chain(args.iter().map(|(k, v)| format!("{k}={v}"))) {
        options.extend(["--build-arg".to_string(), arg]);
    }
    common::cli_build(on, builder, dir, options)
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
        assert!(common::cli_cached(legacy, &again, "COPY . ."), "legacy on {name}: `COPY . .` ran:\n{again}");
        assert!(common::cli_cached(legacy, &again, "ARG APP_VERSION"), "legacy on {name}: the ARG step itself ran:\n{again}");
        assert!(!common::cli_cached(legacy, &again, "RUN CGO_ENABLED=0 go list"), "legacy on {name}: the RUN after the changed ARG was cached:\n{again}");

        let bk = Builder::Buildkit;
        cli_build(on, bk, dir.path(), &tag, &[]);
        let switched = cli_build(on, bk, dir.path(), &tag, &[("BASE", "golang:1.23")]);
        for step in ["COPY . .", "RUN CGO_ENABLED=0 go list"] {
            assert!(common::cli_cached(bk, &switched, step), "BuildKit on {name}: `{step}` of the build stage ran after the base switch:\n{switched}");
        }
        for step in ["COPY go.mod /etc/", "RUN echo"] {
            assert!(!common::cli_cached(bk, &switched, step), "BuildKit on {name}: the final stage's `{step}` was cached on a new base:\n{switched}");
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

/// The instructions real templates use, each in a stage of its own so each reason stands alone: heredoc `RUN` and
/// `COPY`, `COPY --link --chmod --chown`, a `RUN` bind mount, a secret mount (noted), and an `ADD` of a URL whose
/// content changes at every fetch (`remote`).
/// `token` makes the heredoc stage's cache keys this build's own.
fn kinds_dockerfile(port: u16, token: &str) -> String {
    format!(
        r#"FROM debian:bookworm-slim AS heredoc
RUN <<EOF
echo one > /heredoc.txt
echo {token} >> /heredoc.txt
EOF
COPY <<EOT /inline.txt
inline
EOT

FROM debian:bookworm-slim AS flags
COPY --link --chmod=640 --chown=65532:65532 notes.txt /notes.txt

FROM debian:bookworm-slim AS bind
RUN --mount=type=bind,source=go.mod,target=/tmp/go.mod cp /tmp/go.mod /mod.txt

FROM debian:bookworm-slim AS secret
RUN --mount=type=secret,id=token sh -c 'cat /run/secrets/token 2>/dev/null || echo none' > /secret.txt

FROM debian:bookworm-slim AS remote
ADD http://127.0.0.1:{port}/counter.txt /remote.txt

FROM debian:bookworm-slim
COPY --from=heredoc /heredoc.txt /inline.txt /k/
COPY --from=flags /notes.txt /k/
COPY --from=bind /mod.txt /k/
COPY --from=secret /secret.txt /k/
COPY --from=remote /remote.txt /k/
"#
    )
}

const KINDS_SCENARIO: &str = r#"
name = "kinds"
description = "one change per instruction kind"

[[step]]
name = "nothing"

[[step]]
name = "edit-notes"
change = [{ kind = "append", file = "notes.txt", text = "more ({nonce})\n" }]

[[step]]
name = "chown-notes"
change = [{ kind = "chown", file = "notes.txt", owner = "1000:1000" }]

[[step]]
name = "edit-go-mod"
change = [{ kind = "append", file = "go.mod", text = "\n// edited ({nonce})\n" }]

[[step]]
name = "edit-heredoc"
change = [{ kind = "dockerfile-replace", pattern = "echo one > /heredoc.txt", with = "echo two > /heredoc.txt" }]
"#;

/// The step of each stage the test watches, by the prefix BuildKit's own progress names it with.
const WATCHED: [(&str, &str); 6] = [
    ("heredoc", "RUN <<EOF"),
    ("heredoc", "COPY <<EOT"),
    ("flags", "COPY --link"),
    ("bind", "RUN --mount=type=bind"),
    ("secret", "RUN --mount=type=secret"),
    ("remote", "ADD http://"),
];

/// Serves `/counter.txt` with a new body at every request, on loopback; returns its port.
fn counting_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = format!("fetch {n} of {}\n", std::process::id());
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// Copies the folder `from` into `to` (files and folders).
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A scratch app for the kinds tests: the tiny app's module files, `notes.txt` holding `notes`, and `dockerfile` as
/// its `kinds` template.
fn kinds_app(notes: &str, dockerfile: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let tiny = common::tiny_app();
    for file in ["go.mod", "go.sum", "main.go"] {
        std::fs::copy(tiny.join(file), app.path().join(file)).unwrap();
    }
    std::fs::write(app.path().join("notes.txt"), notes).unwrap();
    std::fs::create_dir(app.path().join("dockerfiles")).unwrap();
    std::fs::write(app.path().join("dockerfiles/kinds.Dockerfile"), dockerfile).unwrap();
    app
}

/// The engine's own `docker build` of the kinds template in `dir` with `builder`; returns its output.
fn cli_build_kinds(on: &EngineUnderTest, builder: Builder, dir: &Path, tag: &str) -> String {
    common::cli_build(on, builder, dir, ["--network", "host", "-f", &dir.join("dockerfiles/kinds.Dockerfile").display().to_string(), "-t", tag])
}

/// The CLI's builds after the changes both kinds scenarios start with: nothing, an edit of `notes.txt`, its chown.
fn cli_notes_steps(dir: &Path, build: impl Fn() -> String) -> Vec<(&'static str, String)> {
    build();
    let mut cli = vec![("nothing", build())];
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, std::fs::read_to_string(&notes).unwrap() + "more (cli)\n").unwrap();
    cli.push(("edit-notes", build()));
    std::os::unix::fs::chown(&notes, Some(1000), Some(1000)).unwrap();
    cli.push(("chown-notes", build()));
    cli
}

/// Each watched step (stage, instruction prefix) of layerbench's build of each scenario step is cached as the CLI's
/// build after the same change has it; `why` judges the reason of each that ran.
fn compare_with_cli(results: &layerbench::results::Results, builder: Builder, on: &str, cli: &[(&str, String)], watched: &[(&str, &str)], why: impl Fn(&str, &str, &str, &MissReason)) {
    for (step, output) in cli {
        let r = common::record(results, "kinds", builder, step);
        assert_eq!(r.outcome, layerbench::results::Outcome::Ok, "{on} {step}: {:?} {:?}", r.error, r.error_log);
        for (stage, prefix) in watched {
            let l = r.layers.iter().find(|l| l.stage == *stage && l.instruction.starts_with(prefix)).unwrap_or_else(|| panic!("{on} {step}: no `{prefix}` in {:#?}", r.layers));
            let cli_hit = common::cli_cached(builder, output, prefix);
            assert_eq!(l.cached, cli_hit, "{on} {step}: `{prefix}` cached by layerbench {} and by the CLI {cli_hit}:\n{output}", l.cached);
            if !l.cached {
                let m = l.miss_reason.as_ref().unwrap_or_else(|| panic!("{on} {step}: `{prefix}` ran with no reason"));
                why(step, stage, prefix, m);
            }
        }
    }
}

/// Real templates' instructions on Docker 26's BuildKit (heredocs and `COPY --link` need its frontend): each
/// watched step is cached or executed as the engine's own `docker build` has it after the same change, and an
/// executed one gives the reason its kind calls for.
// Several threads: the CLI blocks one while the counting server answers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_templates_instructions_miss_as_the_cli_says_and_say_why() {
    let _guard = common::engine_lock();
    let engines = common::engines_under_test().await;
    let Some(on) = engines.iter().find(|e| e.name != "default") else {
        println!("skipped: LAYERBENCH_TEST_ENGINES leaves out the Docker 26 engine");
        return;
    };
    let port = counting_server();
    // Unique to this run: no earlier run's cache keys are these.
    let token = format!("layerbench-{}-{}", std::process::id(), layerbench::paths::new_run_id());
    let app = kinds_app(&format!("notes {token}\n"), &kinds_dockerfile(port, &token));
    let scenario = Scenario::parse(KINDS_SCENARIO, Path::new("(miss_reasons.rs)")).unwrap();
    let results = common::run_cells_on(&on.name, on.engine.clone(), app.path(), &["kinds"], vec![scenario], &[Builder::Buildkit], PROXY_PORT).await;
    println!("{}", layerbench::table::cell_tables(&results));

    // The same changes, in the same order, to a copy the engine's own CLI builds.
    let cli_dir = tempfile::tempdir().unwrap();
    copy_tree(app.path(), cli_dir.path());
    let dir = cli_dir.path();
    // Its own heredoc token: what layerbench's builds left in the engine's cache is not the CLI's.
    std::fs::write(dir.join("dockerfiles/kinds.Dockerfile"), kinds_dockerfile(port, &format!("{token}-cli"))).unwrap();
    let tag = format!("layerbench-test/kinds-cli:{}", std::process::id());
    let _remove = RemoveOnDrop(on, tag.clone());
    let build = || cli_build_kinds(on, Builder::Buildkit, dir, &tag);
    let append = |file: &str, text: &str| {
        let path = dir.join(file);
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, old + text).unwrap();
    };
    let mut cli = cli_notes_steps(dir, build);
    append("go.mod", &format!("\n// edited ({token} cli)\n"));
    cli.push(("edit-go-mod", build()));
    let df = dir.join("dockerfiles/kinds.Dockerfile");
    std::fs::write(&df, std::fs::read_to_string(&df).unwrap().replace("echo one > /heredoc.txt", "echo two > /heredoc.txt")).unwrap();
    cli.push(("edit-heredoc", build()));

    let name = on.label();
    for (step, _) in &cli {
        let r = common::record(&results, "kinds", Builder::Buildkit, step);
        assert!(r.notes.iter().any(|n| n.contains("the secret `token`")), "{name} {step}: the secret mount is noted: {:?}", r.notes);
    }
    compare_with_cli(&results, Builder::Buildkit, &name, &cli, &WATCHED, |step, stage, prefix, m| {
        let want = match (stage, step) {
            ("remote", _) => MissKind::Remote,
            ("flags", _) | ("bind", _) => MissKind::Files,
            ("heredoc", "edit-heredoc") if prefix == "RUN <<EOF" => MissKind::Instruction,
            _ => MissKind::Follows,
        };
        assert_eq!(m.kind, want, "{name} {step} `{prefix}`: {m}");
        match stage {
            "flags" => assert!(m.detail.starts_with("notes.txt ("), "{name} {step}: {m}"),
            "bind" => assert!(m.detail.starts_with("go.mod (content)"), "{name} {step}: {m}"),
            _ => {}
        }
    });
    // What the changes were for: each of these ran with the CLI too (checked above), for its own reason.
    let ran = |step: &str, prefix: &str| !common::record(&results, "kinds", Builder::Buildkit, step).layers.iter().find(|l| l.instruction.starts_with(prefix)).unwrap().cached;
    assert!(ran("nothing", "ADD http://") && ran("edit-notes", "COPY --link") && ran("edit-go-mod", "RUN --mount=type=bind") && ran("edit-heredoc", "RUN <<EOF"));
    assert!(!ran("nothing", "RUN <<EOF") && !ran("edit-go-mod", "COPY <<EOT"), "a heredoc step keeps its cache when nothing of it changed");
}

/// What the legacy builder supports of those instructions: `COPY --chown` and an `ADD` of a URL.
fn legacy_kinds_dockerfile(port: u16) -> String {
    format!(
        r#"FROM debian:bookworm-slim AS flags
COPY --chown=65532:65532 notes.txt /notes.txt

FROM debian:bookworm-slim AS remote
ADD http://127.0.0.1:{port}/counter.txt /remote.txt

FROM debian:bookworm-slim
COPY --from=flags /notes.txt /k/
COPY --from=remote /remote.txt /k/
"#
    )
}

const LEGACY_SCENARIO: &str = r#"
name = "legacy-kinds"
description = "one change per instruction kind the legacy builder supports"

[[step]]
name = "nothing"

[[step]]
name = "edit-notes"
change = [{ kind = "append", file = "notes.txt", text = "more ({nonce})\n" }]

[[step]]
name = "chown-notes"
change = [{ kind = "chown", file = "notes.txt", owner = "1000:1000" }]
"#;

/// The same comparison with the legacy builder, on the host's engine: `COPY --chown` and an `ADD` of a URL are
/// cached or executed as its own `docker build` has them, an executed one for its kind's reason.
// Several threads: the CLI blocks one while the counting server answers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_builder_misses_copy_chown_and_a_fetched_add_as_the_cli_says() {
    let _guard = common::engine_lock();
    let engines = common::engines_under_test().await;
    let on = engines.iter().find(|e| e.name == "default").expect("the host's engine");
    let port = counting_server();
    let token = format!("layerbench-{}-{}", std::process::id(), layerbench::paths::new_run_id());
    let app = kinds_app(&format!("notes {token}\n"), &legacy_kinds_dockerfile(port));
    let scenario = Scenario::parse(LEGACY_SCENARIO, Path::new("(miss_reasons.rs)")).unwrap();
    let results = common::run_cells_on(&on.name, on.engine.clone(), app.path(), &["kinds"], vec![scenario], &[Builder::Legacy], PROXY_PORT).await;
    println!("{}", layerbench::table::cell_tables(&results));

    let cli_dir = tempfile::tempdir().unwrap();
    copy_tree(app.path(), cli_dir.path());
    let dir = cli_dir.path();
    std::fs::write(dir.join("notes.txt"), format!("notes {token} cli\n")).unwrap();
    let tag = format!("layerbench-test/legacy-kinds-cli:{}", std::process::id());
    let _remove = RemoveOnDrop(on, tag.clone());
    let build = || cli_build_kinds(on, Builder::Legacy, dir, &tag);
    let cli = cli_notes_steps(dir, build);
    let name = on.label();
    compare_with_cli(&results, Builder::Legacy, &name, &cli, &[("flags", "COPY --chown"), ("remote", "ADD http://")], |step, stage, prefix, m| {
        let want = if stage == "remote" { MissKind::Remote } else { MissKind::Files };
        assert_eq!(m.kind, want, "{name} {step} `{prefix}`: {m}");
    });
    let ran = |step: &str, prefix: &str| !common::record(&results, "kinds", Builder::Legacy, step).layers.iter().find(|l| l.instruction.starts_with(prefix)).unwrap().cached;
    assert!(ran("edit-notes", "COPY --chown"), "a content edit misses the COPY");
}
