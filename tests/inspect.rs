//! Inspection of built images against the real engine: linkage read from the ELF, a binary that cannot start, the user a process runs as, and a cached `@latest` fetch after an upstream release.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

mod common;

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
