//! The harness's own overhead on a fully cached rebuild, side by side with `/usr/bin/docker build` on the same context.
//!
//! Needs a running engine and the provisioned base images and module store
//! (`scripts/setup-engine.sh`, `layerbench setup`). Criterion measures both;
//! then an interleaved loop (harness, CLI, harness, CLI, ...) prints the two
//! medians and their ratio, measured side by side in one run. Target: the
//! harness no slower than the CLI (ratio <= 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use layerbench::context::stream_context;
use layerbench::engine::{BuildRequest, Builder, Engine};
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::{paths, setup};

const PORT: u16 = 48126;
const TAG: &str = "layerbench/bench:cached";
const DOCKERFILE: &str = "dockerfiles/layered.Dockerfile";

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app")
}

fn request(proxy_url: &str) -> BuildRequest {
    let context = stream_context(&app(), Path::new(DOCKERFILE), Builder::Buildkit).expect("the fixture's build context");
    let mut build_args = BTreeMap::new();
    build_args.insert("GOPROXY".to_string(), proxy_url.to_string());
    build_args.insert("GOSUMDB".to_string(), "off".to_string());
    BuildRequest {
        what: "bench".into(),
        context,
        tag: TAG.into(),
        target: None,
        build_args,
        labels: BTreeMap::new(),
        network_mode: "host".into(),
        no_cache: false,
    }
}

/// One cached rebuild through the harness: the context tar is made each time, as `layerbench run` does.
async fn harness_build(engine: &Engine, proxy_url: &str) -> Duration {
    let started = Instant::now();
    let outcome = engine.build(request(proxy_url), &mut |_| {}).await.expect("the harness build");
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    started.elapsed()
}

/// The same rebuild through the Docker CLI (BuildKit), for comparison only.
fn cli_build(proxy_url: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "-q", "--network", "host", "-f", DOCKERFILE, "-t", TAG])
        .args(["--label", "io.layerbench.managed=true", "--label", "io.layerbench.kind=build"])
        .arg("--build-arg")
        .arg(format!("GOPROXY={proxy_url}"))
        .args(["--build-arg", "GOSUMDB=off", "."])
        .current_dir(app())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("/usr/bin/docker runs");
    assert!(status.success(), "docker build failed");
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (engine, proxy) = rt.block_on(async {
        let store = paths::store_dir();
        let (engine, _) = setup::provision(false, &paths::cache_dir(), &store, &paths::debian_mirror())
            .await
            .expect("provisioning (is an engine running? see scripts/setup-engine.sh)");
        let proxy = ProxyServer::start(ProxyConfig::loopback(&store, PORT)).await.expect("the module proxy");
        (engine, proxy)
    });
    let url = proxy.url();
    // Warm the cache once with each, so both measure fully cached rebuilds.
    rt.block_on(harness_build(&engine, &url));
    cli_build(&url);

    let mut c = Criterion::default().sample_size(20).configure_from_args();
    let mut group = c.benchmark_group("fully cached rebuild");
    group.bench_function("layerbench (bollard)", |b| b.iter(|| rt.block_on(harness_build(&engine, &url))));
    group.bench_function("docker CLI", |b| b.iter(|| cli_build(&url)));
    group.finish();

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        ours.push(rt.block_on(harness_build(&engine, &url)));
        theirs.push(cli_build(&url));
    }
    let (a, b) = (median(ours), median(theirs));
    println!(
        "side by side (20 interleaved pairs): layerbench median {:.1} ms, docker CLI median {:.1} ms, ratio {:.2} ({})",
        a.as_secs_f64() * 1000.0,
        b.as_secs_f64() * 1000.0,
        a.as_secs_f64() / b.as_secs_f64(),
        if a <= b { "the harness is no slower than the CLI" } else { "the harness is SLOWER than the CLI" }
    );
    rt.block_on(async {
        let _ = engine.remove_image(TAG).await;
        proxy.stop().await;
    });
}
