//! The measuring core against the real engine: scenarios applied to scratch copies, builds through both builders, cache outcomes and proxy requests recorded.
//!
//! One test builds the sample as the quick suite does (layered, BuildKit, its shipped `.go` edit). The others read
//! two runs of the tiny app, each made once per test binary by the first test that needs it: run A builds `naive`
//! and `layered` with both builders, touches the sources and then edits a `.go` file; run B builds `layered` with
//! both builders, bumps a dependency, then breaks the build.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use layerbench::engine::Builder;
use layerbench::gomod::modfile;
use layerbench::paths;
use layerbench::results::{BuildRecord, BuildStart, Outcome, Results};
use layerbench::scenario::Scenario;
use tokio::sync::OnceCell;

const PROXY_PORT: u16 = 48125;

use common::{cached, record, shipped, tiny_app, tree_digest};

fn inline(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("(run.rs)")).unwrap()
}

async fn run(app: &Path, variants: &[&str], scenarios: Vec<Scenario>, builders: &[Builder]) -> Results {
    common::run_cells(app, variants, scenarios, builders, PROXY_PORT).await
}

/// The sample itself, as the quick suite builds it: a cold layered baseline fetches its modules and a `.go` edit
/// keeps the download cached. (Costs a cold build of the sample, about a minute.)
#[tokio::test]
async fn editing_a_go_file_of_the_sample_keeps_the_download_layer_cached_and_fetches_nothing() {
    let _guard = common::engine_lock();
    let app = paths::sample_app_dir();
    let before = tree_digest(&app);
    let results = run(&app, &["layered"], vec![shipped("edit-go-source")], &[Builder::Buildkit]).await;
    assert_eq!(tree_digest(&app), before, "the user's app directory was modified");

    let baseline = record(&results, "layered", Builder::Buildkit, "baseline");
    assert_eq!(baseline.cache_state, BuildStart::Cold, "the baseline of a cold run");
    assert!(!cached(baseline, "RUN go mod download"), "a cold baseline runs the download");
    assert!(baseline.proxy.requests > 0 && baseline.proxy.modules.len() >= 15);
    let edit = record(&results, "layered", Builder::Buildkit, "edit-handler");
    assert_eq!(edit.outcome, Outcome::Ok, "{:?}", edit.error);
    assert_layered_edit_kept_the_download(edit);
}


/// A `.go` edit rebuilt by the layered template: a rebuild whose module steps stay cached and fetch nothing, while
/// the source copy and the build run again.
fn assert_layered_edit_kept_the_download(edit: &BuildRecord) {
    assert_eq!(edit.cache_state, BuildStart::Rebuild, "a scenario step is a rebuild, not a cold build");
    assert!(cached(edit, "COPY go.mod go.sum"));
    assert!(cached(edit, "RUN go mod download"));
    assert!(!cached(edit, "COPY . ."));
    assert!(!cached(edit, "RUN CGO_ENABLED=0 go build"));
    assert_eq!(edit.proxy.requests, 0, "the rebuild fetched modules: {:?}", edit.proxy.modules);
    let steps: f64 = edit.layers.iter().map(|l| l.duration_ms).sum();
    assert!(steps <= edit.wall_ms, "step times ({steps} ms) exceed the wall time ({} ms)", edit.wall_ms);
    assert!(edit.image.as_ref().is_some_and(|i| i.size_bytes > 0));
}

/// Run A's scenario: touch-only's change (modification times only), then edit-go-source's.
const TOUCH_THEN_EDIT: &str = r#"
name = "touch-then-edit"
description = "touch the module files and the sources, then append a comment to the main package's file"

[[step]]
name = "touch"
change = [
  { kind = "touch", file = "{go_mod}" },
  { kind = "touch", file = "{go_sum}" },
  { kind = "touch", file = "{main_go}" },
  { kind = "touch", file = "{any_go}" },
]

[[step]]
name = "edit-handler"
change = [{ kind = "append", file = "{main_go}", text = "\n// edited by layerbench ({nonce})\n" }]
"#;

/// Run B's scenario: bump-dependency's change, then a file that does not compile; the step after it is never built.
const BUMP_THEN_BREAK: &str = r#"
name = "bump-then-break"
description = "bump BurntSushi/toml v1.2.0 -> v1.3.2, then add a file that does not compile"

[[step]]
name = "bump-toml"
change = [{ kind = "bump-module", module = "github.com/BurntSushi/toml", version = "v1.3.2" }]

[[step]]
name = "break"
change = [{ kind = "write", file = "broken.go", text = "package main\nfunc broken( {\n" }]

[[step]]
name = "after"
change = [{ kind = "append", file = "{main_go}", text = "\n// after the break ({nonce})\n" }]
"#;

/// One run's results, and the entries of the app folder the run changed (none, when it left the folder alone).
struct Shared {
    results: Results,
    app_written: Vec<String>,
}

/// Runs the tiny app's `variants` through `scenario` with BuildKit, then the legacy builder. The whole run (engine,
/// proxy) lives in the calling test's runtime; only plain data is kept for the other tests.
async fn shared(variants: &[&str], scenario: &str) -> Shared {
    let app = tiny_app();
    let before = tree_digest(&app);
    let results = run(&app, variants, vec![inline(scenario)], &[Builder::Buildkit, Builder::Legacy]).await;
    let after = tree_digest(&app);
    let entries: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let app_written = entries.into_iter().filter(|e| before.get(*e) != after.get(*e)).cloned().collect();
    Shared { results, app_written }
}

static RUN_A: OnceCell<Shared> = OnceCell::const_new();
static RUN_B: OnceCell<Shared> = OnceCell::const_new();

/// Run A (made by the first test that asks, while it holds the engine lock): `naive` and `layered` × touch, then edit × both builders.
async fn run_a() -> &'static Shared {
    RUN_A.get_or_init(|| shared(&["naive", "layered"], TOUCH_THEN_EDIT)).await
}

/// Run B (made by the first test that asks, while it holds the engine lock): `layered` × bump, then break × both builders.
async fn run_b() -> &'static Shared {
    RUN_B.get_or_init(|| shared(&["layered"], BUMP_THEN_BREAK)).await
}

#[tokio::test]
async fn a_cold_baseline_fetches_every_required_module_and_an_edited_go_file_then_reuses_the_download_layer_and_fetches_nothing() {
    let _guard = common::engine_lock();
    let run = run_a().await;
    assert!(run.app_written.is_empty(), "the user's app directory was modified: {:?}", run.app_written);
    let results = &run.results;

    let baseline = record(results, "layered", Builder::Buildkit, "baseline");
    assert_eq!(baseline.cache_state, BuildStart::Cold, "the baseline of a cold run");
    assert!(!cached(baseline, "RUN go mod download"), "a cold baseline runs the download");
    assert!(baseline.proxy.requests > 0);
    let go_mod = std::fs::read_to_string(tiny_app().join("go.mod")).unwrap();
    let required = modfile::requirements(&go_mod);
    assert!(!required.is_empty(), "the tiny app requires modules: {go_mod}");
    for r in &required {
        let module = format!("{}@{}", r.module, r.version);
        assert!(baseline.proxy.modules.contains(&module), "go.mod requires {module} but the cold baseline never fetched it: {:?}", baseline.proxy.modules);
    }
    let edit = record(results, "layered", Builder::Buildkit, "edit-handler");
    assert_eq!(edit.outcome, Outcome::Ok, "{:?}", edit.error);
    assert_layered_edit_kept_the_download(edit);
}

#[tokio::test]
async fn editing_a_go_file_with_either_builder_reruns_the_download_only_in_the_naive_variant() {
    let _guard = common::engine_lock();
    let results = &run_a().await.results;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let naive = record(results, "naive", builder, "edit-handler");
        assert!(!cached(naive, "RUN go mod download"), "{builder:?}");
        assert!(naive.proxy.requests > 0, "{builder:?}: the naive rebuild fetched nothing");
        let layered = record(results, "layered", builder, "edit-handler");
        assert!(cached(layered, "COPY go.mod go.sum"), "{builder:?}");
        assert!(cached(layered, "RUN go mod download"), "{builder:?}");
        assert!(!cached(layered, "COPY . ."), "{builder:?}");
        assert!(!cached(layered, "RUN CGO_ENABLED=0 go build"), "{builder:?}");
        assert_eq!(layered.proxy.requests, 0, "{builder:?}");
    }
    // The single-stage naive image keeps its download and build layers: what each holds is read once, from naive's
    // first cold build (BuildKit's cell runs first). A later build of that same image (the touch step's, all cached)
    // reuses its inspection; no other build has them.
    let cold = record(results, "naive", Builder::Buildkit, "baseline");
    let contents = &cold.inspection.as_ref().expect("naive's cold baseline was inspected").layer_contents;
    let download = contents.iter().find(|c| c.created_by.contains("go mod download")).expect("the naive download layer's contents");
    assert!(download.module_cache_bytes > 0 && download.compiled_outputs == 0 && download.package_archives == 0, "{download:?}");
    let build = contents.iter().find(|c| c.created_by.contains("go build")).expect("the naive build layer's contents");
    assert!(build.compiled_outputs > 100, "go build compiles the standard library into the build cache: {build:?}");
    let cold_image = cold.image.as_ref().map(|i| &i.id).expect("naive's cold baseline made an image");
    for r in results.records.iter().filter(|r| r.inspection.as_ref().is_some_and(|i| !i.layer_contents.is_empty())) {
        assert!(
            r.variant == "naive" && r.image.as_ref().map(|i| &i.id) == Some(cold_image),
            "{} {:?} {}: layer contents of an image other than naive's cold baseline ({cold_image}): {:?}",
            r.variant,
            r.builder,
            r.step,
            r.image
        );
    }
}

#[tokio::test]
async fn a_dependency_bump_rebuilds_from_the_go_mod_copy_on_and_fetches_the_new_version() {
    let _guard = common::engine_lock();
    let results = &run_b().await.results;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let bump = record(results, "layered", builder, "bump-toml");
        assert_eq!(bump.outcome, Outcome::Ok, "{builder:?}: {:?}", bump.error);
        let build_stage: Vec<_> = bump.layers.iter().filter(|l| l.stage == "build").collect();
        let from = build_stage.iter().position(|l| l.instruction.starts_with("COPY go.mod")).unwrap();
        for l in &build_stage[from..] {
            assert!(!l.cached, "{builder:?}: `{}` came from the cache after the bump", l.instruction);
        }
        assert!(bump.proxy.modules.contains(&"github.com/BurntSushi/toml@v1.3.2".to_string()), "{builder:?}: {:?}", bump.proxy.modules);
        assert!(!bump.proxy.modules.iter().any(|m| m == "github.com/BurntSushi/toml@v1.2.0"));
        assert!(bump.notes.iter().any(|n| n.contains("v1.2.0 -> v1.3.2")), "{:?}", bump.notes);
    }
}

#[tokio::test]
async fn touching_files_leaves_every_step_cached_with_either_builder() {
    let _guard = common::engine_lock();
    let results = &run_a().await.results;
    let touched: Vec<_> = results.records.iter().filter(|r| r.step == "touch").collect();
    assert_eq!(touched.len(), 4);
    for r in touched {
        let misses: Vec<_> = r.layers.iter().filter(|l| !l.cached && !l.instruction.starts_with("FROM")).collect();
        assert!(misses.is_empty(), "{} {:?}: {misses:#?}", r.variant, r.builder);
        assert_eq!(r.proxy.requests, 0);
    }
}

#[tokio::test]
async fn a_failed_build_is_recorded_with_its_step_error_and_own_output_with_both_builders_and_the_next_cell_still_runs() {
    let _guard = common::engine_lock();
    let results = &run_b().await.results;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let failed = record(results, "layered", builder, "break");
        assert_eq!(failed.outcome, Outcome::Failed);
        let error = failed.error.as_deref().unwrap();
        assert!(error.contains("RUN CGO_ENABLED=0 go build"), "{builder:?}: {error}");
        // The failing command's own output: the compiler's message names the file and line.
        let log = failed.error_log.join("\n");
        assert!(log.contains("broken.go:2") && failed.error_log.len() <= 40, "{builder:?}: {log}");
        assert!(!log.contains("---> "), "{builder:?}: the legacy builder's own markers are not the step's output: {log}");
        assert!(failed.error_with_output().unwrap().lines().skip(1).all(|l| l.starts_with("| ")), "{builder:?}");
    }
    let failed = record(results, "layered", Builder::Buildkit, "break");
    let failing = failed.layers.iter().find(|l| l.error.is_some()).expect("the failing step carries its error");
    assert!(failing.instruction.starts_with("RUN CGO_ENABLED=0 go build"));
    assert!(!results.records.iter().any(|r| r.step == "after"), "steps after a failure are not built");
    // Records are in run order: the legacy cell, next after BuildKit's, built its baseline and bump after the failure.
    let position = |builder: Builder, step: &str| {
        results
            .records
            .iter()
            .position(|r| r.variant == "layered" && r.builder == builder && r.step == step)
            .unwrap_or_else(|| panic!("no record for layered {builder:?} {step}"))
    };
    let broke = position(Builder::Buildkit, "break");
    for step in ["baseline", "bump-toml"] {
        let next = &results.records[position(Builder::Legacy, step)];
        assert!(position(Builder::Legacy, step) > broke, "the legacy {step} ran before BuildKit's failed build");
        assert_eq!(next.outcome, Outcome::Ok, "the next cell's {step}: {:?}", next.error);
    }
}

#[tokio::test]
async fn a_legacy_cell_of_a_buildkit_only_dockerfile_is_recorded_as_not_applicable() {
    let _guard = common::engine_lock();
    let results = run(&tiny_app(), &["cache-mount"], vec![shipped("no-change")], &[Builder::Legacy]).await;
    assert_eq!(results.records.len(), 1, "nothing is built: {:#?}", results.records);
    let r = &results.records[0];
    assert_eq!(r.outcome, Outcome::NotApplicable);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("--mount") && e.contains("needs BuildKit")), "{:?}", r.error);
}
