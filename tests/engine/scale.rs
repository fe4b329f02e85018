//! Runs spread over engines layerbench owns and over shards, through the binary as a user runs them: two owned
//! engines give the same per-step outcomes as one, every record names its engine and `isolation: private`, and the
//! merge of two shards holds exactly the cells of the unsharded run, with the same outcomes.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use layerbench::results::{Isolation, Results};

const PROXY_PORT: &str = "48241";

/// Runs the binary with `args`; returns its exit code and output.
fn layerbench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
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

/// Per build (template, scenario, builder, repetition, step): its outcome and each Dockerfile step's cache outcome.
type Outcomes = BTreeMap<(String, String, String, u32, String), (layerbench::results::Outcome, Vec<(String, bool)>)>;

fn outcomes(results: &Results) -> Outcomes {
    results
        .records
        .iter()
        .map(|r| {
            let key = (r.variant.clone(), r.scenario.clone(), r.builder.name().to_string(), r.repetition, r.step.clone());
            let steps = r.layers.iter().map(|l| (l.instruction.clone(), l.cached)).collect();
            (key, (r.outcome, steps))
        })
        .collect()
}

/// Two cells of two builds each: the tiny app's no-compile template (its layers are those of `layered` but the
/// compile; what is compared here is outcomes, not Go's) over a source edit, and over a touch of the sources.
fn run(out: &Path, extra: &[&str]) -> Results {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app");
    let mut args = vec![
        "run", "--app", app.to_str().unwrap(), "--variant", common::NO_COMPILE, "--scenario", "edit-go-source", "--scenario", "touch-only",
        "--repetitions", "1", "--proxy-port", PROXY_PORT, "--out", out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, text) = layerbench(&args);
    assert_eq!(code, 0, "layerbench {}:\n{text}", args.join(" "));
    Results::read(&out.join("results.json")).unwrap()
}

#[tokio::test]
async fn cells_spread_over_two_owned_engines_and_merged_shards_give_the_outcomes_of_one_engine() {
    let _guard = common::engine_lock();
    common::provisioned().await;
    let names = [format!("scale-a-{}", std::process::id()), format!("scale-b-{}", std::process::id())];
    let mut engines = OwnedEngines(Vec::new());
    for name in &names {
        let (code, text) = layerbench(&["engine", "start", "--name", name]);
        engines.0.push(name.clone());
        assert_eq!(code, 0, "engine start {name}:\n{text}");
    }
    let (a, b) = (names[0].as_str(), names[1].as_str());
    let dir = tempfile::tempdir().unwrap();

    let one = run(&dir.path().join("one"), &["--engine", a]);
    assert_eq!(one.records.len(), 4, "two cells of two builds");
    assert!(one.records.iter().all(|r| r.engine == a && r.isolation == Isolation::Private), "{:?}", one.engines);
    // Both cells' baselines (one template, two scenarios): every RUN step ran.
    let baselines: Vec<_> = one.records.iter().filter(|r| r.step == "baseline").collect();
    assert_eq!(baselines.len(), 2, "a baseline in each cell");
    for baseline in baselines {
        assert!(baseline.layers.iter().any(|l| l.instruction.starts_with("RUN")), "{}: no RUN step recorded", baseline.scenario);
        assert!(baseline.layers.iter().filter(|l| l.instruction.starts_with("RUN")).all(|l| !l.cached), "{}: an emptied engine starts every cell cold", baseline.scenario);
    }

    let two = run(&dir.path().join("two"), &["--engine", a, "--engine", b]);
    assert_eq!(outcomes(&two), outcomes(&one), "the same per-step outcomes on two engines as on one");
    let used: std::collections::BTreeSet<&str> = two.records.iter().map(|r| r.engine.as_str()).collect();
    assert_eq!(used, [a, b].into_iter().collect(), "each engine took a cell");
    assert!(two.records.iter().all(|r| r.isolation == Isolation::Private));
    assert_eq!(two.engines.len(), 2);
    assert!(two.records.windows(2).all(|w| w[0].cell <= w[1].cell), "records in the plan's order");
    // Each engine reached the proxy through its own lane: its builds' requests are its own.
    for r in two.records.iter().filter(|r| r.step == "baseline") {
        assert!(r.build_args["GOPROXY"].contains("/lane/"), "{:?}", r.build_args);
        assert!(r.proxy.requests > 0, "{} × {} fetched its modules through its lane", r.variant, r.scenario);
    }

    let first = run(&dir.path().join("shard1"), &["--engine", a, "--shard", "1/2"]);
    let second = run(&dir.path().join("shard2"), &["--engine", b, "--shard", "2/2"]);
    assert_eq!((first.records.len(), second.records.len()), (2, 2));
    let merged_dir = dir.path().join("merged");
    let shard_file = |s: &str| dir.path().join(s).join("results.json").display().to_string();
    let (code, text) = layerbench(&["merge", &shard_file("shard1"), &shard_file("shard2"), "--out", merged_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "merge:\n{text}");
    let merged = Results::read(&merged_dir.join("results.json")).unwrap();
    assert!(merged_dir.join("REPORT.md").is_file());
    let cells = |r: &Results| r.records.iter().map(|r| r.cell).collect::<Vec<_>>();
    assert_eq!(cells(&merged), cells(&one), "the merge holds exactly the unsharded run's cells, in its order");
    assert_eq!(outcomes(&merged), outcomes(&one));
    assert!(merged.complete && merged.shard.is_none());

    // A shard of another configuration is refused, naming what differs.
    let mut other = second.clone();
    other.options.repetitions = 3;
    let other_file = dir.path().join("other.json");
    other.write(&other_file).unwrap();
    let (code, text) = layerbench(&["merge", &shard_file("shard1"), other_file.to_str().unwrap(), "--out", dir.path().join("refused").to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("comes from another configuration") && text.contains("run options differ"), "{text}");
}
