//! The proof of life against the real engine: the sample service built through BuildKit with the module proxy, then its self-test run from the image.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use layerbench::gomod::modfile;
use layerbench::goproxy::server::RequestKind;
use layerbench::paths;
use layerbench::selftest::run_selftest;

#[tokio::test]
async fn the_sample_service_builds_through_the_proxy_and_passes_its_self_test_from_scratch_as_non_root() {
    let _guard = common::engine_lock();
    let (engine, store) = common::provisioned().await;
    let app = paths::sample_app_dir();
    // No cache: every step runs, so every module must come from the proxy.
    let report = run_selftest(&engine, &app, &store, 48124, true, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("selftest failed to run: {e}"));

    assert!(report.service_passed(), "self-test output:\n{}", report.output);
    assert!(report.output.contains("running as uid 65532"), "{}", report.output);
    assert!(report.runs_as_non_root(), "image user is `{}`", report.image_user);
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let runs: Vec<_> = report.steps.iter().filter(|s| s.name.contains("] RUN ")).collect();
    assert_eq!(runs.len(), 2, "{:?}", report.steps);
    assert!(runs.iter().all(|s| !s.cached), "a no-cache build reused a RUN step: {runs:?}");
    assert!(report.steps.iter().any(|s| s.name.contains("RUN go mod download")), "{:?}", report.steps);

    let image = engine.image(&report.image_id).await.unwrap().expect("the built image exists");
    assert_eq!(image.layers, 1, "a FROM scratch image with one COPY has one layer");

    assert!(report.proxy_misses().is_empty(), "unanswered: {:?}", report.proxy_misses());
    let go_sum = std::fs::read_to_string(app.join("go.sum")).unwrap();
    let sum = common::go_sum_entries(&go_sum);
    let zips: Vec<(String, String)> = report
        .proxy_requests
        .iter()
        .filter(|r| r.kind == RequestKind::Zip && r.status == 200)
        .map(|r| (r.module.clone().unwrap(), r.version.clone().unwrap()))
        .collect();
    for (module, version) in &zips {
        assert!(
            sum.iter().any(|(m, v, go_mod)| m == module && v == version && !go_mod),
            "the proxy served {module}@{version}, which go.sum does not name"
        );
    }
    let go_mod = std::fs::read_to_string(app.join("go.mod")).unwrap();
    let required = modfile::requirements(&go_mod);
    assert!(required.len() >= 15, "the sample requires a realistic set of modules: {required:?}");
    for r in &required {
        assert!(
            zips.contains(&(r.module.clone(), r.version.clone())),
            "go.mod requires {}@{} but the proxy never served its zip",
            r.module,
            r.version
        );
    }
}
