//! The harness's own overhead on a fully cached rebuild, side by side with `/usr/bin/docker build` on the same context, for both builders.
//!
//! Needs a running engine and the provisioned base images and module store
//! (`scripts/setup-engine.sh`, `layerbench setup`). Criterion measures all
//! four (harness and CLI, BuildKit and legacy); then an interleaved loop
//! (harness BuildKit, CLI BuildKit, harness legacy, CLI legacy, ...) prints
//! per builder the two medians and their ratio, measured side by side in one
//! run. Target: the harness no slower than the CLI (ratio <= 1).
//!
//! Every image it tags carries `io.layerbench.run=bench-<pid>` and is
//! removed at the end by that label. The legacy builder's warm-up also leaves
//! unlabelled intermediate images (its cache of the build stage); run under
//! the engine lock, every image that appeared during the bench is its own, so
//! those are removed at the end too (`docker rmi` without force: an image
//! another one uses stays).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use layerbench::context::{ContextTransfer, IgnoreDialect};
use layerbench::engine::{BuildRequest, Builder, ContextSource, Engine, RUN_LABEL};
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::{paths, setup};

const PORT: u16 = 48126;
const DOCKERFILE: &str = "dockerfiles/layered.Dockerfile";
const BUILDERS: [Builder; 2] = [Builder::Buildkit, Builder::Legacy];
/// Interleaved rounds (each one build of all four kinds).
const ROUNDS: usize = 20;

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app")
}

/// What one bench process builds with: its proxy's address and the run label that marks its images.
struct Setup {
    proxy_url: String,
    run_id: String,
    /// The `.dockerignore` rules of the engine's own CLI.
    dialect: IgnoreDialect,
}

impl Setup {
    fn tag(&self, builder: Builder) -> String {
        format!("layerbench/bench-cached:{}-{}", self.run_id, builder.name())
    }

    fn request(&self, builder: Builder) -> BuildRequest {
        let context = ContextSource::new(&app(), Path::new(DOCKERFILE), builder, self.dialect, ContextTransfer::Session).expect("the fixture's build context");
        let build_args = BTreeMap::from([
            ("GOPROXY".to_string(), self.proxy_url.clone()),
            ("GOSUMDB".to_string(), "off".to_string()),
        ]);
        BuildRequest {
            what: "bench".into(),
            context,
            tag: self.tag(builder),
            target: None,
            build_args,
            labels: BTreeMap::from([(RUN_LABEL.to_string(), self.run_id.clone())]),
            network_mode: "host".into(),
            no_cache: false,
        }
    }
}

/// One cached rebuild through the harness: the context tar is made each time, as `layerbench run` does.
async fn harness_build(engine: &Engine, setup: &Setup, builder: Builder) -> Duration {
    let started = Instant::now();
    let outcome = engine.build(setup.request(builder), &mut |_| {}).await.expect("the harness build");
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    started.elapsed()
}

/// The same rebuild through the Docker CLI with the same labels (`DOCKER_BUILDKIT` picks the builder), for comparison only.
fn cli_build(setup: &Setup, builder: Builder) -> Duration {
    let started = Instant::now();
    let status = Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", if builder == Builder::Buildkit { "1" } else { "0" })
        .args(["build", "-q", "--network", "host", "-f", DOCKERFILE, "-t", &setup.tag(builder)])
        .args(["--label", "io.layerbench.managed=true", "--label", "io.layerbench.kind=build"])
        .arg("--label")
        .arg(format!("{RUN_LABEL}={}", setup.run_id))
        .arg("--build-arg")
        .arg(format!("GOPROXY={}", setup.proxy_url))
        .args(["--build-arg", "GOSUMDB=off", "."])
        .current_dir(app())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("/usr/bin/docker runs");
    assert!(status.success(), "docker build ({}) failed", builder.name());
    started.elapsed()
}

/// Every image id in the engine, intermediate ones included.
fn image_ids() -> BTreeSet<String> {
    let out = Command::new("/usr/bin/docker")
        .args(["images", "--all", "--quiet", "--no-trunc"])
        .output()
        .expect("/usr/bin/docker runs");
    assert!(out.status.success(), "docker images failed");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Removes the images that appeared since `before` (leaves first: a parent still in use is retried after its children); returns how many went.
fn remove_new_images(before: &BTreeSet<String>) -> usize {
    let mut removed = 0;
    loop {
        let new: Vec<String> = image_ids().difference(before).cloned().collect();
        let gone = new
            .iter()
            .filter(|id| {
                Command::new("/usr/bin/docker")
                    .args(["rmi", id.as_str()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .count();
        removed += gone;
        if gone == 0 {
            return removed;
        }
    }
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
    let before = image_ids();
    let setup = Setup { proxy_url: proxy.url(), run_id: format!("bench-{}", std::process::id()), dialect: IgnoreDialect::of_engine(&engine.version) };
    // Warm the cache with each, so all four measure fully cached rebuilds.
    for builder in BUILDERS {
        rt.block_on(harness_build(&engine, &setup, builder));
        cli_build(&setup, builder);
    }

    let mut c = Criterion::default().sample_size(20).configure_from_args();
    let mut group = c.benchmark_group("fully cached rebuild");
    for builder in BUILDERS {
        let name = builder.name();
        group.bench_function(format!("layerbench (bollard), {name}"), |b| b.iter(|| rt.block_on(harness_build(&engine, &setup, builder))));
        group.bench_function(format!("docker CLI, {name}"), |b| b.iter(|| cli_build(&setup, builder)));
    }
    group.finish();

    let mut times: BTreeMap<(&str, &str), Vec<Duration>> = BTreeMap::new();
    for _ in 0..ROUNDS {
        for builder in BUILDERS {
            times.entry((builder.name(), "harness")).or_default().push(rt.block_on(harness_build(&engine, &setup, builder)));
            times.entry((builder.name(), "cli")).or_default().push(cli_build(&setup, builder));
        }
    }
    println!("side by side ({ROUNDS} interleaved rounds of harness and CLI, both builders):");
    for builder in BUILDERS {
        let name = builder.name();
        let ours = median(times.remove(&(name, "harness")).unwrap_or_default());
        let theirs = median(times.remove(&(name, "cli")).unwrap_or_default());
        println!(
            "  {name:8}: layerbench median {:.1} ms, docker CLI median {:.1} ms, ratio {:.2} ({})",
            ours.as_secs_f64() * 1000.0,
            theirs.as_secs_f64() * 1000.0,
            ours.as_secs_f64() / theirs.as_secs_f64(),
            if ours <= theirs { "the harness is no slower than the CLI" } else { "the harness is SLOWER than the CLI" }
        );
    }
    rt.block_on(async {
        let removed = engine.remove_labelled(None, Some(&setup.run_id)).await.expect("removing the bench's images");
        println!("removed {} images labelled {}", removed.len(), setup.run_id);
        proxy.stop().await;
    });
    println!("removed {} intermediate images the bench's builds left", remove_new_images(&before));
}
