//! The measuring core against the real engine: scenarios applied to scratch copies, builds through both builders, cache outcomes and proxy requests recorded.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

mod common;

use std::path::Path;

use layerbench::engine::Builder;
use layerbench::paths;
use layerbench::results::{BuildStart, Results};
use layerbench::scenario::Scenario;

const PROXY_PORT: u16 = 48125;

use common::{cached, record, shipped, tiny_app, tree_digest};

fn inline(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("(test)")).unwrap()
}

async fn run(app: &Path, variants: &[&str], scenarios: Vec<Scenario>, builders: &[Builder]) -> Results {
    common::run_cells(app, variants, scenarios, builders, PROXY_PORT).await
}




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
    assert_eq!(edit.outcome, layerbench::results::Outcome::Ok, "{:?}", edit.error);
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

#[tokio::test]
async fn editing_a_go_file_with_either_builder_reruns_the_download_only_in_the_naive_variant() {
    let _guard = common::engine_lock();
    let edit = inline(
        "name = \"edit\"\ndescription = \"edit main.go\"\n[[step]]\nname = \"edit\"\nchange = [{ kind = \"append\", file = \"main.go\", text = \"\\n// {nonce}\\n\" }]\n",
    );
    let results = run(&tiny_app(), &["naive", "layered"], vec![edit], &[Builder::Buildkit, Builder::Legacy]).await;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let naive = record(&results, "naive", builder, "edit");
        assert!(!cached(naive, "RUN go mod download"), "{builder:?}");
        assert!(naive.proxy.requests > 0, "{builder:?}: the naive rebuild fetched nothing");
        let layered = record(&results, "layered", builder, "edit");
        assert!(cached(layered, "COPY go.mod go.sum"), "{builder:?}");
        assert!(cached(layered, "RUN go mod download"), "{builder:?}");
        assert!(!cached(layered, "COPY . ."), "{builder:?}");
        assert!(!cached(layered, "RUN CGO_ENABLED=0 go build"), "{builder:?}");
        assert_eq!(layered.proxy.requests, 0, "{builder:?}");
    }
    // The single-stage naive image keeps its download and build layers: what each holds is read once, from a cold build.
    let contents: Vec<_> = results.records.iter().filter_map(|r| r.inspection.as_ref()).flat_map(|i| i.layer_contents.iter()).collect();
    let download = contents.iter().find(|c| c.created_by.contains("go mod download")).expect("the naive download layer's contents");
    assert!(download.module_cache_bytes > 0 && download.compiled_outputs == 0 && download.package_archives == 0, "{download:?}");
    let build = contents.iter().find(|c| c.created_by.contains("go build")).expect("the naive build layer's contents");
    assert!(build.compiled_outputs > 100, "go build compiles the standard library into the build cache: {build:?}");
    assert!(results.records.iter().all(|r| r.inspection.as_ref().is_none_or(|i| i.layer_contents.is_empty()) || (r.variant == "naive" && r.step == "baseline")));
}

#[tokio::test]
async fn a_dependency_bump_rebuilds_from_the_go_mod_copy_on_and_fetches_the_new_version() {
    let _guard = common::engine_lock();
    let results = run(&tiny_app(), &["layered"], vec![shipped("bump-dependency")], &[Builder::Buildkit, Builder::Legacy]).await;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let bump = record(&results, "layered", builder, "bump-toml");
        assert_eq!(bump.outcome, layerbench::results::Outcome::Ok, "{builder:?}: {:?}", bump.error);
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
    let touch = inline(
        "name = \"touch\"\ndescription = \"touch\"\n[[step]]\nname = \"touch\"\nchange = [{ kind = \"touch\", file = \"go.mod\" }, { kind = \"touch\", file = \"go.sum\" }, { kind = \"touch\", file = \"main.go\" }]\n",
    );
    let results = run(&tiny_app(), &["naive", "layered"], vec![touch], &[Builder::Buildkit, Builder::Legacy]).await;
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
    let broken = inline(
        "name = \"break\"\ndescription = \"d\"\n[[step]]\nname = \"break\"\nchange = [{ kind = \"write\", file = \"broken.go\", text = \"package main\\nfunc broken( {\\n\" }]\n[[step]]\nname = \"never\"\n",
    );
    let fine = inline("name = \"fine\"\ndescription = \"d\"\n[[step]]\nname = \"again\"\n");
    let results = run(&tiny_app(), &["layered"], vec![broken, fine], &[Builder::Buildkit, Builder::Legacy]).await;
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let failed = record(&results, "layered", builder, "break");
        assert_eq!(failed.outcome, layerbench::results::Outcome::Failed);
        let error = failed.error.as_deref().unwrap();
        assert!(error.contains("RUN CGO_ENABLED=0 go build"), "{builder:?}: {error}");
        // The failing command's own output: the compiler's message names the file and line.
        let log = failed.error_log.join("\n");
        assert!(log.contains("broken.go:2") && failed.error_log.len() <= 40, "{builder:?}: {log}");
        assert!(!log.contains("---> "), "{builder:?}: the legacy builder's own markers are not the step's output: {log}");
        assert!(failed.error_with_output().unwrap().lines().skip(1).all(|l| l.starts_with("| ")), "{builder:?}");
    }
    let failed = record(&results, "layered", Builder::Buildkit, "break");
    let failing = failed.layers.iter().find(|l| l.error.is_some()).expect("the failing step carries its error");
    assert!(failing.instruction.starts_with("RUN CGO_ENABLED=0 go build"));
    assert!(!results.records.iter().any(|r| r.step == "never"), "steps after a failure are not built");
    let next = results.records.iter().find(|r| r.scenario == "fine" && r.step == "again").expect("the next cell ran");
    assert_eq!(next.outcome, layerbench::results::Outcome::Ok);
}

#[tokio::test]
async fn a_legacy_cell_of_a_buildkit_only_dockerfile_is_recorded_as_not_applicable() {
    let _guard = common::engine_lock();
    let results = run(&tiny_app(), &["cache-mount"], vec![shipped("no-change")], &[Builder::Legacy]).await;
    assert_eq!(results.records.len(), 1, "nothing is built: {:#?}", results.records);
    let r = &results.records[0];
    assert_eq!(r.outcome, layerbench::results::Outcome::NotApplicable);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("--mount") && e.contains("needs BuildKit")), "{:?}", r.error);
}
