//! The harness's own overhead on a fully cached rebuild, side by side with `/usr/bin/docker build` on the same context, for both builders.
//!
//! Needs a running engine and the provisioned base images and module store
//! (`scripts/setup-engine.sh`, `layerbench setup`). Criterion measures all
//! four (harness and CLI, BuildKit and legacy); then an interleaved loop
//! (harness BuildKit, CLI BuildKit, harness legacy, CLI legacy, ...) prints
//! per builder the two medians and their ratio, measured side by side in one
//! run. Target: the harness at most half the CLI's time (ratio <= 0.5).
//!
//! Under each ratio, the mean split of the harness's time over the rounds
//! (`BuildOutcome::timings`, plus the making of the context around the call):
//! making the context, the request going out, request to the stream's first
//! item, the stream, the context's end, the image inspection after the build;
//! beside them what overlaps (opening the BuildKit session, the context's
//! walk or the session's listings, parsing the stream). "The engine's part"
//! (request sent to the stream's end) over the CLI's median is the lowest
//! ratio any client could reach on this engine. Each round also times
//! `docker --version` (no engine call): the CLI's own start, which the CLI's
//! side pays on every build.
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
/// The harness's time over the CLI's that the bench aims at.
const TARGET_RATIO: f64 = 0.5;

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

/// Where one rebuild through the harness spent its time, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Split {
    total: f64,
    /// `ContextSource::new`: the folder resolved, the rules read, a tar's walk started.
    prepare: f64,
    before_request: f64,
    to_first_item: f64,
    stream: f64,
    context_end: f64,
    inspect: f64,
    /// Overlapping the phases above.
    session_open: f64,
    context_walk: f64,
    /// Part of `stream`.
    parsing: f64,
    sync_calls: f64,
}

impl Split {
    /// The phases that follow each other, named as printed.
    fn phases(&self) -> [(&'static str, f64); 6] {
        [
            ("making the context", self.prepare),
            ("before the request", self.before_request),
            ("request -> first item", self.to_first_item),
            ("stream", self.stream),
            ("context end", self.context_end),
            ("image inspect", self.inspect),
        ]
    }

    /// What the engine's work bounds: from the request sent to the stream's end.
    fn engine_part(&self) -> f64 {
        self.to_first_item + self.stream
    }

    /// The mean of each field over `splits`.
    fn mean(splits: &[Split]) -> Split {
        Split {
            total: mean_of(splits, |s| s.total),
            prepare: mean_of(splits, |s| s.prepare),
            before_request: mean_of(splits, |s| s.before_request),
            to_first_item: mean_of(splits, |s| s.to_first_item),
            stream: mean_of(splits, |s| s.stream),
            context_end: mean_of(splits, |s| s.context_end),
            inspect: mean_of(splits, |s| s.inspect),
            session_open: mean_of(splits, |s| s.session_open),
            context_walk: mean_of(splits, |s| s.context_walk),
            parsing: mean_of(splits, |s| s.parsing),
            sync_calls: mean_of(splits, |s| s.sync_calls),
        }
    }
}

/// The mean of `field` over `splits`.
fn mean_of(splits: &[Split], field: impl Fn(&Split) -> f64) -> f64 {
    splits.iter().map(field).sum::<f64>() / splits.len().max(1) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One cached rebuild through the harness: the context is made each time, as `layerbench run` does.
async fn harness_build(engine: &Engine, setup: &Setup, builder: Builder) -> Split {
    let started = Instant::now();
    let request = setup.request(builder);
    let prepared = started.elapsed();
    let outcome = engine.build(request, &mut |_| {}).await.expect("the harness build");
    let total = started.elapsed();
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let t = outcome.timings;
    Split {
        total: ms(total),
        prepare: ms(prepared),
        before_request: ms(t.before_request),
        to_first_item: ms(t.to_first_item),
        stream: ms(t.stream),
        context_end: ms(t.context_end),
        inspect: ms(t.inspect),
        session_open: ms(t.session_open),
        context_walk: ms(t.context_walk),
        parsing: ms(t.parsing),
        sync_calls: t.sync_calls as f64,
    }
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

/// The CLI's own start and exit, without an engine call (`docker --version`): paid by every CLI build.
fn cli_start() -> Duration {
    let started = Instant::now();
    let status = Command::new("/usr/bin/docker").arg("--version").stdout(std::process::Stdio::null()).status().expect("/usr/bin/docker runs");
    assert!(status.success(), "docker --version failed");
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

    let mut splits: BTreeMap<&str, Vec<Split>> = BTreeMap::new();
    let mut cli_times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut cli_starts: Vec<Duration> = Vec::new();
    for _ in 0..ROUNDS {
        for builder in BUILDERS {
            splits.entry(builder.name()).or_default().push(rt.block_on(harness_build(&engine, &setup, builder)));
            cli_times.entry(builder.name()).or_default().push(cli_build(&setup, builder));
        }
        cli_starts.push(cli_start());
    }
    println!("side by side ({ROUNDS} interleaved rounds of harness and CLI, both builders; target ratio <= {TARGET_RATIO:.2}):");
    for builder in BUILDERS {
        let name = builder.name();
        let ours = splits.remove(name).unwrap_or_default();
        let ours_median = median(ours.iter().map(|s| Duration::from_secs_f64(s.total / 1000.0)).collect());
        let theirs = ms(median(cli_times.remove(name).unwrap_or_default()));
        let ratio = ms(ours_median) / theirs;
        println!(
            "  {name:8}: layerbench median {:.1} ms, docker CLI median {theirs:.1} ms, ratio {ratio:.2} ({})",
            ms(ours_median),
            if ratio <= TARGET_RATIO { "meets the target" } else { "MISSES the target" }
        );
        let mean = Split::mean(&ours);
        let phases: Vec<String> = mean.phases().iter().map(|(what, t)| format!("{what} {t:.1}")).collect();
        let named: f64 = mean.phases().iter().map(|(_, t)| t).sum();
        println!("            layerbench, mean of {} (ms): {:.1} = {} + other {:.1}", ours.len(), mean.total, phases.join(" + "), mean.total - named);
        println!(
            "            overlapping (ms): session open {:.1} (within before the request), context walk {:.1} ({:.1} sync calls), parsing {:.2} (within the stream)",
            mean.session_open, mean.context_walk, mean.sync_calls, mean.parsing
        );
        println!(
            "            the engine's part (request sent -> end of stream) {:.1} ms = {:.2} of the CLI's median: no client gets below that ratio on this engine",
            mean.engine_part(),
            mean.engine_part() / theirs
        );
    }
    println!("  the CLI's own start (`docker --version`, no engine call): median {:.1} ms", ms(median(cli_starts)));
    rt.block_on(async {
        let removed = engine.remove_labelled(None, Some(&setup.run_id)).await.expect("removing the bench's images");
        println!("removed {} images labelled {}", removed.len(), setup.run_id);
        proxy.stop().await;
    });
    println!("removed {} intermediate images the bench's builds left", remove_new_images(&before));
}
