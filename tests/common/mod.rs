//! Shared set-up for the tests of both binaries (`engine` and `offline`); the engine tests run one at a time, on a
//! provisioned machine.

#![allow(dead_code)]

pub mod context_fixtures;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use layerbench::engine::{Builder, Engine};
use layerbench::goproxy::layout::StoreLayout;
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::results::{BuildRecord, Builder as RecordBuilder, CacheState, Isolation, Probe, Results};
use layerbench::run::{self as runner, Plan};
use layerbench::scenario::{self, Scenario};
use layerbench::{paths, setup};

static ENGINE: Mutex<()> = Mutex::new(());

/// Serialises the tests of one binary that use the engine (two cores, one daemon).
pub fn engine_lock() -> MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connects and provisions base images and the module store (a no-op when present).
pub async fn provisioned() -> (Engine, PathBuf) {
    let store = paths::store_dir();
    let (engine, _) = setup::provision(false, &paths::cache_dir(), &store, &paths::debian_mirror())
        .await
        .unwrap_or_else(|e| panic!("provisioning failed: {e}"));
    (engine, store)
}

/// `module version` pairs of a go.sum: (module, version, is_go_mod_hash).
pub fn go_sum_entries(text: &str) -> Vec<(String, String, bool)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let module = parts.next()?.to_string();
            let version = parts.next()?;
            Some(match version.strip_suffix("/go.mod") {
                Some(v) => (module, v.to_string(), true),
                None => (module, version.to_string(), false),
            })
        })
        .collect()
}

/// The small fixture app.
pub fn tiny_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-app")
}

/// The tiny app's template with `layered`'s cache shape (module files, download, sources) and no compile: its image
/// holds only the list of the sources it copied, no program, so a test of runs, cells, engines or cache outcomes
/// skips the seconds of a cold `go build`.
pub const NO_COMPILE: &str = "no-compile";

/// The fixture templates whose image holds no program to probe, as (app folder, template): the tiny app's
/// [`NO_COMPILE`], and the why-app's `why`, whose build step lists its packages rather than compiling them (the
/// miss-reason tests build it about twenty times).
pub const WITHOUT_PROGRAM: [(&str, &str); 2] = [("tiny-app", NO_COMPILE), ("why-app", "why")];

/// A scenario shipped in `scenarios/`.
pub fn shipped(name: &str) -> Scenario {
    scenario::select(&paths::scenarios_dir(), &[name.to_string()]).unwrap().remove(0)
}

/// Runs the cells (cold, one repetition, every image inspected and, but for [`WITHOUT_PROGRAM`]'s, probed with
/// `selftest`) with the proxy on `port`, and returns the results file as written to disk.
pub async fn run_cells(app: &Path, variants: &[&str], scenarios: Vec<Scenario>, builders: &[Builder], port: u16) -> Results {
    let (engine, _) = provisioned().await;
    run_cells_on("default", engine, app, variants, scenarios, builders, port).await
}

/// [`run_cells`] on the engine `name` (`default`, or one layerbench owns).
pub async fn run_cells_on(name: &str, engine: Engine, app: &Path, variants: &[&str], scenarios: Vec<Scenario>, builders: &[Builder], port: u16) -> Results {
    let store = paths::store_dir();
    let cache = paths::cache_dir();
    let provisioned = setup::provision_on(&engine, false, &cache, &setup::StoreSpec::default_store(&store), &paths::debian_mirror()).await.unwrap();
    let names: Vec<String> = variants.iter().map(|v| v.to_string()).collect();
    let mut variants = runner::variants(app, &names).unwrap();
    for v in &mut variants {
        // Both the sample and the tiny app answer `selftest`.
        if !WITHOUT_PROGRAM.iter().any(|&(folder, name)| app.ends_with(folder) && v.name == name) {
            v.probe = Some(Probe::selftest());
        }
    }
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, port)).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let run_id = format!("test-{}", paths::new_run_id());
    let plan = Plan {
        app: app.to_path_buf(),
        context: app.to_path_buf(),
        cells: runner::cells(&variants, &scenarios, builders, 1),
        cache_state: CacheState::Cold,
        work_dir: cache.join("workspaces").join(&run_id),
        results_path: out.path().join("results.json"),
        proxy_url: proxy.url(),
        store: StoreLayout::new(&store),
        inspect: true,
        layer_contents: true,
        build_timeout: runner::DEFAULT_BUILD_TIMEOUT,
        engine_wait: std::time::Duration::from_secs(120),
        spread: runner::Spread::Shared,
        context_transfer: Default::default(),
        frontend: Default::default(),
    };
    let mut results = runner::new_results(&run_id, &provisioned, &store, &plan, &plan.cells);
    let (_stop, mut interrupt) = tokio::sync::watch::channel(false);
    let engines = [runner::RunEngine { name: name.into(), engine, isolation: Isolation::Shared, proxy: runner::ProxyHandles::of(&proxy) }];
    runner::run(&engines, &plan, &mut results, &mut |_| {}, &mut interrupt)
        .await
        .unwrap();
    proxy.stop().await;
    let on_disk = Results::read(&plan.results_path).unwrap();
    assert_eq!(on_disk, results, "the results file holds what the run measured");
    assert!(on_disk.complete);
    on_disk
}

/// The record of `variant`'s build at `step` by `builder`.
pub fn record<'a>(results: &'a Results, variant: &str, builder: RecordBuilder, step: &str) -> &'a BuildRecord {
    results
        .records
        .iter()
        .find(|r| r.variant == variant && r.builder == builder && r.step == step)
        .unwrap_or_else(|| panic!("no record for {variant} {builder:?} {step}"))
}

/// The cache outcome of the step whose instruction starts with `prefix`.
pub fn cached(r: &BuildRecord, prefix: &str) -> bool {
    r.layers
        .iter()
        .find(|l| l.instruction.starts_with(prefix))
        .unwrap_or_else(|| panic!("{} {}: no step `{prefix}` in {:#?}", r.variant, r.step, r.layers))
        .cached
}

/// Every entry under `dir` (files with their bytes, folders and links) with its mode and modification time, to show nothing was written.
pub fn tree_digest(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let bytes = if meta.is_file() { std::fs::read(e.path()).unwrap() } else { Vec::new() };
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            (rel, (bytes, meta.permissions().mode(), meta.modified().unwrap()))
        })
        .collect()
}

/// One plain HTTP GET to a proxy on loopback: the status and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let answer = layerbench::goproxy::client::get(addr, path, &[]).await.unwrap();
    (answer.status, answer.body)
}

/// The owned Docker 26.1 engine (Debian 13's docker.io, graph driver store) the tests that compare engines use.
/// `scripts/test.sh` starts it in the background while the tests compile, or else the first test that needs it does;
/// it is kept for the others, and `scripts/test.sh` stops it at the end.
pub const MODERN: &str = "lbt-modern";

/// An engine the tests compare layerbench with the Docker CLI on, and the way to run that engine's own CLI.
pub struct EngineUnderTest {
    /// `default` (the host's engine), or the name of an engine layerbench owns.
    pub name: String,
    pub engine: Engine,
}

impl EngineUnderTest {
    /// That engine's own Docker CLI, pointed at it; `binds` are the folders it reads (contexts, Dockerfiles).
    pub fn cli(&self, binds: &[PathBuf]) -> std::process::Command {
        if self.name == "default" {
            // The engine `Engine::connect` reaches: DOCKER_HOST or the default socket.
            std::process::Command::new("/usr/bin/docker")
        } else {
            layerbench::engine::owned::cli_command(&paths::engines_dir(), &self.name, binds).unwrap_or_else(|e| panic!("the CLI of engine {}: {e}", self.name))
        }
    }

    /// The engine's image store: `graphdriver` or `containerd`.
    pub async fn image_store(&self) -> String {
        self.engine.machine().await.unwrap_or_else(|e| panic!("{}: {e}", self.name)).image_store
    }

    /// `docker version`'s server version, as the engine reports it.
    pub fn label(&self) -> String {
        format!("{} (Docker {})", self.name, self.engine.version.engine)
    }
}

/// The Docker 26.1 engine the tests own, started (its root made once, base images loaded) when not running as
/// such: with the graph driver's image store, or the containerd one (the default of new Docker installs) when
/// `LAYERBENCH_TEST_MODERN_STORE=containerd`.
pub async fn modern_engine() -> Engine {
    use layerbench::engine::owned::{self, ImageStore, Liveness, StartOptions};
    let engines = paths::engines_dir();
    let image_store = match std::env::var("LAYERBENCH_TEST_MODERN_STORE").as_deref() {
        Ok("containerd") => ImageStore::Containerd,
        _ => ImageStore::Graphdriver,
    };
    let options = StartOptions { release: "trixie".into(), image_store };
    let state = owned::read_state(&engines, MODERN).unwrap();
    let running = owned::liveness(state.as_ref()) == Liveness::Running && state.as_ref().is_some_and(|s| s.release == options.release && s.image_store == options.image_store);
    if !running {
        if state.is_some() {
            owned::stop(&engines, MODERN, false).unwrap();
        }
        owned::start_dockerd(&engines, MODERN, &options, &paths::cache_dir(), &paths::debian_mirror())
            .await
            .unwrap_or_else(|e| panic!("starting the Docker 26 engine {MODERN}: {e}"));
    }
    let engine = Engine::connect_spec(MODERN).await.unwrap_or_else(|e| panic!("engine {MODERN}: {e}"));
    let provisioned = setup::provision_on(&engine, false, &paths::cache_dir(), &setup::StoreSpec::default_store(&paths::store_dir()), &paths::debian_mirror())
        .await
        .unwrap_or_else(|e| panic!("provisioning engine {MODERN}: {e}"));
    if !running {
        owned::record_base_images(&engines, MODERN, provisioned.base_images.iter().map(|i| i.id.clone()).collect()).unwrap();
    }
    engine
}

/// The engines the CLI comparisons run on: the host's, and the owned Docker 26.1 one unless
/// `LAYERBENCH_TEST_ENGINES=default` leaves it out.
pub async fn engines_under_test() -> Vec<EngineUnderTest> {
    let (engine, _) = provisioned().await;
    let mut all = vec![EngineUnderTest { name: "default".into(), engine }];
    if std::env::var("LAYERBENCH_TEST_ENGINES").map_or(true, |v| v.split(',').any(|e| e == "modern")) {
        all.push(EngineUnderTest { name: MODERN.into(), engine: modern_engine().await });
    }
    all
}

/// The engine's own `docker build` of `dir` with `builder` (`DOCKER_BUILDKIT`), `options` after `build` and plain
/// progress for BuildKit; returns both streams, and fails the test when the build fails.
pub fn cli_build<S: AsRef<std::ffi::OsStr>>(on: &EngineUnderTest, builder: Builder, dir: &Path, options: impl IntoIterator<Item = S>) -> String {
    let mut cmd = on.cli(&[dir.to_path_buf()]);
    cmd.env("DOCKER_BUILDKIT", if builder == Builder::Buildkit { "1" } else { "0" }).arg("build").args(options);
    if builder == Builder::Buildkit {
        cmd.arg("--progress=plain");
    }
    let out = cmd.arg(dir).output().expect("run the docker CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "docker build on {} failed:\n{text}", on.label());
    text
}

/// Whether the CLI's output shows the step whose instruction starts with `prefix` as cached.
pub fn cli_cached(builder: Builder, output: &str, prefix: &str) -> bool {
    match builder {
        Builder::Legacy => {
            let start = output.lines().position(|l| l.starts_with("Step ") && l.split_once(" : ").is_some_and(|(_, t)| t.starts_with(prefix)));
            let start = start.unwrap_or_else(|| panic!("no legacy step `{prefix}` in:\n{output}"));
            output.lines().skip(start + 1).take_while(|l| !l.starts_with("Step ")).any(|l| l.trim() == "---> Using cache")
        }
        Builder::Buildkit => {
            let id = output
                .lines()
                .find_map(|l| l.split_once("] ").filter(|(_, t)| t.starts_with(prefix)).and_then(|(head, _)| head.split_whitespace().next()))
                .unwrap_or_else(|| panic!("no BuildKit step `{prefix}` in:\n{output}"));
            output.lines().any(|l| l.trim() == format!("{id} CACHED"))
        }
    }
}
