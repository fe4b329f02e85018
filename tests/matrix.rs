//! A matrix run over two engines layerbench owns, through the binary as a user runs it: every cell is built on every
//! engine, each record names its engine and that engine's version, records come in plan order then engine order,
//! the run's last lines and REPORT.md say where the engines differ (or that none differ), `compare` and
//! `check --matrix` name the engines, and `--matrix` with one engine or with `--shard` is refused with exit 2.
//! The lead adds an engine of another release (`layerbench engine start --name modern --release trixie`) by
//! setting `LAYERBENCH_MATRIX_ENGINE=NAME` to an engine already running: then it stands in for the second one.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

mod common;

use std::path::Path;
use std::process::Command;

use layerbench::results::Results;

const PROXY_PORT: &str = "48243";

/// Runs the binary with `args` in `cwd`; returns its exit code and output.
fn layerbench_in(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench")).current_dir(cwd).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn layerbench(args: &[&str]) -> (i32, String) {
    layerbench_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Owned engines started for the test, stopped (folder and all) however it ends.
struct OwnedEngines(Vec<String>);

impl Drop for OwnedEngines {
    fn drop(&mut self) {
        for name in &self.0 {
            let (code, text) = layerbench(&["engine", "stop", "--name", name]);
            if code != 0 {
                eprintln!("stopping the owned engine {name}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn a_matrix_builds_every_cell_on_every_engine_and_says_where_they_differ() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    let mut started = OwnedEngines(Vec::new());
    let a = format!("matrix-a-{}", std::process::id());
    // The second engine: one already running (the lead's `modern`), or one of the default release started here.
    let given = std::env::var("LAYERBENCH_MATRIX_ENGINE").ok().filter(|n| !n.is_empty());
    let b = given.clone().unwrap_or_else(|| format!("matrix-b-{}", std::process::id()));
    let to_start = if given.is_some() { vec![&a] } else { vec![&a, &b] };
    for name in to_start {
        let (code, text) = layerbench(&["engine", "start", "--name", name]);
        started.0.push(name.clone());
        assert_eq!(code, 0, "engine start {name}:\n{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app");
    let out = dir.path().join("matrix");
    let base = [
        "run", "--app", app.to_str().unwrap(), "--variant", "layered", "--scenario", "edit-go-source", "--repetitions", "1",
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
    if differences.none_differ() {
        assert!(text.contains("no cell step differs across 2 engines") && text.contains("and 2 cell steps"), "{text}");
        assert!(report.contains("No cell step differs across 2 engines"), "{report}");
    } else {
        eprintln!("the engines differ:\n{}", layerbench::table::engine_differences(&differences));
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
            "app = {:?}\nscenarios = [\"edit-go-source\"]\n\n[[template]]\nname = \"layered\"\ndockerfile = {:?}\n\n[[template.expect]]\nscenario = \"edit-go-source\"\ncached = [\"RUN go mod download\"]\n",
            app.display().to_string(),
            app.join("dockerfiles/layered.Dockerfile").display().to_string()
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
    assert!(xml.contains(&format!("classname=\"layerbench.{a}.layered\"")) && xml.contains(&format!("classname=\"layerbench.{b}.layered\"")), "{xml}");
    // The single-engine file holds one engine: --matrix on it is a usage error.
    let (code, text) = layerbench_in(dir.path(), &["check", "--matrix", "--from", single.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    drop(started);
}
