//! Inspection of built images against the real engine: linkage read from the ELF, a binary that cannot start, the user a process runs as, and a cached `@latest` fetch after an upstream release.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use layerbench::engine::Builder;
use layerbench::results::{BuildRecord, Results};
use layerbench::scenario::Scenario;

const PROXY_PORT: u16 = 48127;

use common::{shipped, tiny_app};

async fn run(variants: &[&str], scenario: Scenario) -> Results {
    common::run_cells(&tiny_app(), variants, vec![scenario], &[Builder::Buildkit], PROXY_PORT).await
}

fn baseline<'a>(r: &'a Results, variant: &str) -> &'a BuildRecord {
    r.records.iter().find(|x| x.variant == variant && x.step == "baseline").unwrap()
}

#[tokio::test]
async fn static_and_dynamic_binaries_are_told_apart_and_the_dynamic_one_cannot_start_from_scratch() {
    let _guard = common::engine_lock();
    let r = run(&["layered", "dynamic-scratch"], shipped("no-change")).await;

    let s = baseline(&r, "layered").inspection.as_ref().expect("inspected");
    let bin = s.binary.as_ref().expect("the entrypoint binary was read");
    assert_eq!((bin.path.as_str(), bin.linkage.as_str()), ("/tiny", "static"));
    assert!(bin.interpreter.is_none() && bin.needed.is_empty());
    assert!(bin.go_modules.iter().any(|m| m == "github.com/BurntSushi/toml v1.2.0"), "{:?}", bin.go_modules);
    let image_size = baseline(&r, "layered").image.as_ref().unwrap().size_bytes;
    let layers: u64 = s.layer_sizes.iter().map(|l| l.size_bytes).sum();
    assert_eq!(layers, image_size, "per-layer sizes add up to the image size: {:?}", s.layer_sizes);
    assert!(s.layer_sizes.iter().any(|l| l.created_by.contains("COPY") && l.size_bytes > 1_000_000));
    let run = s.runtime.as_ref().unwrap();
    assert!(run.passed, "{}", run.output);
    assert_eq!(run.uid, Some(65532), "the non-root user is seen inside the container");

    let d = baseline(&r, "dynamic-scratch").inspection.as_ref().expect("inspected");
    let bin = d.binary.as_ref().unwrap();
    assert_eq!(bin.linkage, "dynamic");
    assert!(bin.interpreter.as_deref().is_some_and(|i| i.contains("ld-linux")), "{:?}", bin.interpreter);
    assert!(bin.needed.iter().any(|n| n.starts_with("libc.")), "{:?}", bin.needed);
    let run = d.runtime.as_ref().unwrap();
    assert_ne!(run.exit_code, 0);
    assert!(!run.passed);
    assert!(run.output.contains("no such file or directory"), "{}", run.output);
}

#[tokio::test]
async fn a_cached_latest_fetch_stays_stale_after_upstream_publishes_a_new_version() {
    let _guard = common::engine_lock();
    let r = run(&["fetch-latest"], shipped("upstream-publishes-new-version")).await;
    let base = baseline(&r, "fetch-latest");
    let after = r.records.iter().find(|x| x.step == "publish-toml-v1.3.2").unwrap();
    let fetch = |rec: &BuildRecord| rec.layers.iter().find(|l| l.instruction.starts_with("RUN go mod download -json")).unwrap().cached;
    assert!(!fetch(base), "the cold baseline runs the fetch");
    assert!(base.proxy.modules.contains(&"github.com/BurntSushi/toml@v1.2.0".to_string()), "{:?}", base.proxy.modules);
    assert!(fetch(after), "the fetch layer came from the cache after the release");
    assert_eq!(after.proxy.requests, 0);
    let latest = |rec: &BuildRecord| {
        rec.inspection.as_ref().unwrap().files.iter().find(|(p, _)| p == "/toml-latest.json").map(|(_, t)| t.clone()).unwrap()
    };
    assert!(latest(after).contains("\"Version\": \"v1.2.0\""), "{}", latest(after));
    assert!(after.notes.iter().any(|n| n.contains("published github.com/BurntSushi/toml@v1.3.2")));
}

/// Docker 20.10 exports an image in its own archive (read by the tests above and tests/engine/run.rs) and Docker 26 in the
/// OCI layout: on the owned Docker 26.1 engine too the naive image's download and build layers are read, per-layer
/// sizes add up to the image, and the static binary is read.
#[tokio::test]
async fn layer_contents_sizes_and_binaries_are_read_from_what_docker_26_exports() {
    let _guard = common::engine_lock();
    for on in common::engines_under_test().await.into_iter().filter(|e| e.name != "default") {
        let name = on.label();
        let r = common::run_cells_on(&on.name, on.engine.clone(), &tiny_app(), &["naive", "layered"], vec![shipped("no-change")], &[Builder::Buildkit], PROXY_PORT).await;
        let naive = baseline(&r, "naive").inspection.as_ref().expect("inspected");
        assert!(naive.error.is_none(), "{name}: {:?}", naive.error);
        let download = naive.layer_contents.iter().find(|c| c.created_by.contains("go mod download")).unwrap_or_else(|| panic!("{name}: no download layer read: {naive:?}"));
        assert!(download.module_cache_bytes > 0 && download.compiled_outputs == 0, "{name}: {download:?}");
        let build = naive.layer_contents.iter().find(|c| c.created_by.contains("go build")).unwrap_or_else(|| panic!("{name}: no build layer read"));
        assert!(build.compiled_outputs > 100, "{name}: {build:?}");
        let layered = baseline(&r, "layered");
        let sizes: u64 = layered.inspection.as_ref().unwrap().layer_sizes.iter().map(|l| l.size_bytes).sum();
        assert_eq!(sizes, layered.image.as_ref().unwrap().size_bytes, "{name}: per-layer sizes add up to the image");
        let bin = layered.inspection.as_ref().unwrap().binary.as_ref().unwrap_or_else(|| panic!("{name}: the binary was not read"));
        assert_eq!(bin.linkage, "static", "{name}");
    }
}
