//! A matrix run over the host's engine (Docker 20.10) and an owned Docker 26.1 engine, through the binary as a user
//! runs it: every cell is built on every
//! engine, each record names its engine and that engine's version, records come in plan order then engine order,
//! the run's last lines and REPORT.md say where the engines differ (or that none differ), `compare` and
//! `check --matrix` name the engines, and `--matrix` with one engine or with `--shard` is refused with exit 2.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::path::Path;
use std::process::Command;

use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::results::Results;

const PROXY_PORT: &str = "48243";
const CLI_PROXY_PORT: u16 = 48244;

/// Runs the binary with `args` in `cwd`; returns its exit code and output.
fn layerbench_in(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench")).current_dir(cwd).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn layerbench(args: &[&str]) -> (i32, String) {
    layerbench_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Each Dockerfile step of a cold BuildKit build of `app`'s no-compile template by the engine's own CLI,
/// with whether the CLI printed it `CACHED`.
/// As layerbench builds a cold baseline: on an engine it owns, emptied first; on a shared one, with `--no-cache`.
async fn cli_cold_outcomes(on: &common::EngineUnderTest, app: &Path) -> Vec<(String, bool)> {
    let owned = on.name != "default";
    if owned {
        on.engine.empty().await.unwrap();
    }
    let out = on
        .cli(&[app.to_path_buf()])
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", if owned { "--pull=false" } else { "--no-cache" }, "--progress=plain", "--network", "host", "-f"])
        .arg(app.join("dockerfiles/no-compile.Dockerfile"))
        .args(["--build-arg", &format!("GOPROXY=http://127.0.0.1:{CLI_PROXY_PORT}"), "--build-arg", "GOSUMDB=off"])
        .arg(app)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "docker build on {}:\n{text}", on.label());
    let dockerfile = std::fs::read_to_string(app.join("dockerfiles/no-compile.Dockerfile")).unwrap();
    let instructions = dockerfile.lines().filter(|l| !l.starts_with('#') && !l.starts_with("FROM") && !l.starts_with("ARG") && !l.trim().is_empty());
    // `#7 [build 3/6] COPY go.mod go.sum ./`, then `#7 CACHED` when it came from the cache: the build stage's
    // WORKDIR, two COPYs and two RUNs (`go mod download`, `ls -R`), and the final stage's `COPY --from=build`.
    let outcomes: Vec<(String, bool)> = instructions
        .filter_map(|ins| {
            let id = text.lines().find_map(|l| l.split_once("] ").filter(|(_, t)| t.trim() == ins).and_then(|(head, _)| head.split_whitespace().next()))?;
            Some((ins.to_string(), text.lines().any(|l| l.trim() == format!("{id} CACHED"))))
        })
        .collect();
    assert_eq!(outcomes.len(), 6, "the CLI's steps on {}: {outcomes:?}\n{text}", on.label());
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_builds_every_cell_on_every_engine_and_says_where_they_differ() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    // Docker 20.10 (the host's engine) and Docker 26.1 (an engine of Debian 13's release that layerbench owns).
    common::modern_engine().await;
    let (a, b) = ("default".to_string(), common::MODERN.to_string());
    let dir = tempfile::tempdir().unwrap();
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app");
    let out = dir.path().join("matrix");
    let base = [
        "run", "--app", app.to_str().unwrap(), "--variant", "no-compile", "--scenario", "edit-go-source", "--repetitions", "1",
        "--proxy-port", PROXY_PORT,
    ];
    let with = |extra: &[&str]| base.iter().copied().chain(extra.iter().copied()).map(str::to_string).collect::<Vec<String>>();

    // Usage errors first: they build nothing.
    let args = with(&["--engine", &a, "--matrix", "--out", dir.path().join("one").to_str().unwrap()]);
    let (code, text) = layerbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "--matrix with one engine:\n{text}");
    assert!(text.contains("--matrix builds every cell on every engine, and it was given 1"), "{text}");
    let args = with(&["--engine", &a, "--engine", &b, "--matrix", "--shard", "1/2", "--out", dir.path().join("shard").to_str().unwrap()]);
    let (code, text) = layerbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "--matrix with --shard:\n{text}");
    assert!(text.contains("--matrix cannot be combined with --shard 1/2"), "{text}");

    let args = with(&["--engine", &a, "--engine", &b, "--matrix", "--out", out.to_str().unwrap()]);
    let (code, text) = layerbench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "matrix run:\n{text}");
    let results = Results::read(&out.join("results.json")).unwrap();
    assert!(results.complete && results.options.matrix);

    // Every cell on every engine, in plan order then engine order, each record naming its engine and version.
    let pairs: Vec<(Option<usize>, &str, &str)> = results.records.iter().map(|r| (r.cell, r.engine.as_str(), r.step.as_str())).collect();
    assert_eq!(
        pairs,
        [(Some(0), a.as_str(), "baseline"), (Some(0), a.as_str(), "edit-handler"), (Some(0), b.as_str(), "baseline"), (Some(0), b.as_str(), "edit-handler")],
        "one cell of two builds on each engine"
    );
    for r in &results.records {
        let version = r.engine_version.as_ref().expect("every record carries its engine's version");
        let used = results.engines.iter().find(|e| e.name == r.engine).expect("the record's engine is listed");
        assert_eq!(version, &used.version);
        assert!(!version.engine.is_empty() && !version.api.is_empty());
    }
    // The same inputs on each engine: the lanes differ, the files do not.
    assert!(results.records.iter().all(|r| r.build_args["GOPROXY"].contains("/lane/")));

    // The run's last lines and REPORT.md compare the engines: a table of differences, or the line that none differ.
    let differences = layerbench::analysis::engines::engine_differences(&results).expect("a matrix has engines to compare");
    assert_eq!(differences.cell_steps, 2);
    assert!(text.contains("engines compared: "), "{text}");
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(report.contains("## Engines compared"), "{report}");
    // Each engine's own CLI, on the same folder and Dockerfile, cold: layerbench's outcomes on each engine are the
    // CLI's, so a difference between the engines is one the CLI shows too.
    let store = layerbench::paths::store_dir();
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, CLI_PROXY_PORT)).await.unwrap();
    for on in common::engines_under_test().await.iter().filter(|e| e.name == a || e.name == b) {
        let by_cli = cli_cold_outcomes(on, &app).await;
        let record = results.records.iter().find(|r| r.engine == on.name && r.step == "baseline").expect("a baseline on each engine");
        let ours: Vec<(String, bool)> = record.layers.iter().filter(|l| by_cli.iter().any(|(i, _)| *i == l.instruction)).map(|l| (l.instruction.clone(), l.cached)).collect();
        assert_eq!(ours, by_cli, "layerbench's cold outcomes on {} against its CLI's", on.label());
    }
    proxy.stop().await;
    let edit_differs = differences.steps.iter().any(|d| d.step == "edit-handler");
    assert!(!edit_differs, "after the edit the engines differ:\n{}", layerbench::table::engine_differences(&differences));
    if differences.none_differ() {
        assert!(text.contains("no cell step differs across 2 engines") && text.contains("and 2 cell steps"), "{text}");
        assert!(report.contains("No cell step differs across 2 engines"), "{report}");
    } else {
        assert!(text.contains("cell steps differ") || text.contains("differs:"), "{text}");
    }
    // The per-cell tables name each engine.
    assert!(text.contains(&format!("(cold) on {a}")) && text.contains(&format!("(cold) on {b}")), "{text}");

    // compare: a single-engine file against the matrix names the engines' differences, and pairs the shared engine.
    let single = dir.path().join("single.json");
    results.of_engine(&a).write(&single).unwrap();
    let (code, text) = layerbench(&["compare", single.to_str().unwrap(), out.join("results.json").to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "compare:\n{text}");
    assert!(text.contains(&format!("loopback on {a}")), "the shared engine's builds are paired engine by engine:\n{text}");

    // check --matrix --from: every expectation on each engine, the engine in every line and in JUnit.
    let project = dir.path().join("layerbench.toml");
    std::fs::write(
        &project,
        format!(
            "app = {:?}\nscenarios = [\"edit-go-source\"]\n\n[[template]]\nname = \"no-compile\"\ndockerfile = {:?}\n\n[[template.expect]]\nscenario = \"edit-go-source\"\ncached = [\"RUN go mod download\"]\n",
            app.display().to_string(),
            app.join("dockerfiles/no-compile.Dockerfile").display().to_string()
        ),
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let (code, text) = layerbench_in(
        dir.path(),
        &["check", "--matrix", "--from", out.join("results.json").to_str().unwrap(), "--junit", junit.to_str().unwrap()],
    );
    assert!(code == 0 || code == 1, "check --matrix --from:\n{text}");
    for engine in [&a, &b] {
        assert!(text.lines().any(|l| l.contains(&format!("on {engine}")) && l.contains("cached = \"RUN go mod download\"")), "{engine} in the lines:\n{text}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(&format!("classname=\"layerbench.{a}.no-compile\"")) && xml.contains(&format!("classname=\"layerbench.{b}.no-compile\"")), "{xml}");
    // The single-engine file holds one engine: --matrix on it is a usage error.
    let (code, text) = layerbench_in(dir.path(), &["check", "--matrix", "--from", single.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
}
