//! A whole run from its cells to its results file: the module store and base images, the engines, the module proxy, the plan, signals and progress.

use anyhow::{Context, Result};

use crate::cli::EngineArgs;
use crate::cli::{BadInput, Say, print_provisioned};
use crate::engine::Engine;
use crate::goproxy::server::{ProxyConfig, ProxyServer, Upstream};
use crate::goproxy::upstream_from_env;
use crate::results::{CacheState, Results};
use crate::setup::StoreSpec;
use crate::{paths, progress, run as runner, setup};

/// What a run builds, however its cells were chosen.
pub struct RunSpec {
    pub app: std::path::PathBuf,
    pub context: std::path::PathBuf,
    pub cells: Vec<runner::Cell>,
    pub cache_state: CacheState,
    pub suite: Option<String>,
    /// The suite's or project file's build timeout (`--build-timeout` overrides it).
    pub build_timeout: Option<std::time::Duration>,
    /// The suite's or project file's frontend (`--frontend` overrides it).
    pub frontend: Option<crate::results::Frontend>,
    /// The results file of the run this one resumes.
    pub resume: Option<std::path::PathBuf>,
    /// Every step of every build in the log, on a terminal too.
    pub verbose: bool,
    /// The share of the cells this run builds.
    pub shard: Option<crate::results::Shard>,
    /// Read what each template's first cold image's Go layers hold (for the claims that need it).
    pub layer_contents: bool,
}

/// The engines `--engine` names (the default one when none), each with its isolation; two with one name are refused.
async fn connect_engines(specs: &[String]) -> Result<Vec<(Engine, crate::results::Isolation)>> {
    use crate::results::Isolation;
    if specs.is_empty() {
        return Ok(vec![(Engine::connect().await?, Isolation::Shared)]);
    }
    let mut engines: Vec<(Engine, Isolation)> = Vec::new();
    for spec in specs {
        let engine = Engine::connect_spec(spec).await.map_err(|e| anyhow::anyhow!(e)).with_context(|| format!("--engine {spec}"))?;
        if let Some((other, _)) = engines.iter().find(|(e, _)| e.name() == engine.name()) {
            anyhow::bail!(BadInput::from_error(anyhow::anyhow!("--engine {spec} names the engine {} twice (as {})", engine.name(), other.target())));
        }
        let isolation = if engine.is_owned() { Isolation::Private } else { Isolation::Shared };
        engines.push((engine, isolation));
    }
    Ok(engines)
}


/// Provisions, starts the module proxy, runs every cell and returns the results and where they were written.
pub async fn execute(spec: RunSpec, args: &EngineArgs, say: &Say) -> Result<(crate::results::Results, std::path::PathBuf)> {
    let cache = paths::cache_dir();
    let mirror = paths::debian_mirror();
    let cwd = std::env::current_dir().context("failed to read the current folder")?;
    let store_spec = match (&args.store, &args.recipe) {
        (Some(dir), _) => StoreSpec::Existing(cwd.join(dir)),
        (None, Some(recipe)) => StoreSpec::from_recipe_file(&cwd.join(recipe), &cache)?,
        (None, None) => StoreSpec::default_store(&paths::store_dir()),
    };
    let upstream = if args.no_upstream { None } else { args.upstream.clone().or_else(upstream_from_env) };
    // A resumed run keeps its id and its file; only the cells the file lacks are built.
    let mut resumed = match &spec.resume {
        Some(path) => Some((Results::read(path).map_err(BadInput::from_error)?, path.clone())),
        None => None,
    };
    let all_cells = spec.cells;
    let mut cells: Vec<runner::Cell> = all_cells.iter().filter(|c| spec.shard.is_none_or(|s| s.holds(c.index))).cloned().collect();
    let mut spread = if args.matrix { runner::Spread::Matrix { done: Default::default() } } else { runner::Spread::Shared };
    if let Some((results, path)) = &mut resumed {
        let all = cells.len();
        (cells, spread) = runner::resume(cells, results, path, args.matrix).map_err(BadInput::from_error)?;
        match &spread {
            runner::Spread::Shared => say.line(&format!("resuming run {} from {}: {} of its {all} cells left to build", results.run_id, path.display(), cells.len())),
            runner::Spread::Matrix { done } => say.line(&format!("resuming matrix run {} from {}: {} cells finished on an engine are kept; each engine builds the rest of its {all}", results.run_id, path.display(), done.len())),
        }
    }
    let run_id = resumed.as_ref().map_or_else(paths::new_run_id, |(r, _)| r.run_id.clone());
    let results_path = match &resumed {
        Some((_, path)) => path.clone(),
        None => args.out.clone().unwrap_or_else(|| paths::results_dir().join(&run_id)).join("results.json"),
    };
    // Before provisioning and the first build: a folder that cannot take the results fails now, not an hour in.
    let results_dir = results_path.parent().unwrap_or(std::path::Path::new("."));
    crate::durable::check_writable(results_dir).with_context(|| format!("the results folder {} cannot be written", results_dir.display()))?;
    let engines = connect_engines(&args.engines).await?;
    if args.matrix {
        runner::check_matrix(engines.len(), spec.shard).map_err(BadInput::from_error)?;
    }
    let mut p = setup::provision_on(&engines[0].0, false, &cache, &store_spec, &mirror).await?;
    // The images the templates name: stand-ins of missing ones are made before the first build.
    let named = runner::base_image_names(&cells);
    let made = crate::images::ensure_stand_ins(&engines[0].0, &named, &cache, &mirror).await?;
    for image in made {
        if !p.base_images.iter().any(|b| b.name == image.name) {
            p.base_images.push(image);
        }
    }
    print_provisioned(&p, say);
    for (engine, _) in &engines[1..] {
        // Every engine builds from the same base images (made, or loaded from the cached root filesystems, as needed).
        let mut images = crate::images::ensure_base_images(engine, false, &cache, &mirror).await?;
        images.extend(crate::images::ensure_stand_ins(engine, &named, &cache, &mirror).await?);
        say.line(&format!("engine {}: Docker {} (API {}), {} base images ready", engine.name(), engine.version.engine, engine.version.api, images.len()));
    }
    let store = store_spec.path().to_path_buf();
    let mut proxy_config = ProxyConfig::loopback(&store, args.proxy_port);
    proxy_config.upstream = upstream.as_ref().map(|url| Upstream::new(url.clone(), paths::upstream_cache_dir()));
    let proxy = ProxyServer::start(proxy_config).await?;
    if let Some(url) = &upstream {
        say.line(&format!("module proxy {}: the store {}, then the upstream {url} (answers kept in {})", proxy.url(), store.display(), paths::upstream_cache_dir().display()));
    }
    let plan = runner::Plan {
        app: spec.app,
        context: spec.context,
        cells,
        cache_state: spec.cache_state,
        work_dir: cache.join("workspaces").join(&run_id),
        results_path: results_path.clone(),
        proxy_url: proxy.url(),
        store: crate::goproxy::layout::StoreLayout::new(&store),
        inspect: true,
        layer_contents: spec.layer_contents,
        build_timeout: args.build_timeout.or(spec.build_timeout).unwrap_or(runner::DEFAULT_BUILD_TIMEOUT),
        engine_wait: args.engine_wait,
        spread,
        context_transfer: args.context_transfer,
        frontend: args.frontend.or(spec.frontend).unwrap_or_default(),
    };
    let mut results = match resumed {
        Some((results, _)) => results,
        None => {
            // The options name every cell of the run, the other shards' too: shards of one run have equal options.
            let mut results = runner::new_results(&run_id, &p, &store, &plan, &all_cells);
            results.options.suite = spec.suite;
            results.options.upstream = upstream;
            results.shard = spec.shard;
            results
        }
    };
    // One engine builds through the proxy's plain URL; several get a lane each, so each build's requests are its own.
    let lanes = engines.len() > 1;
    let run_engines: Vec<runner::RunEngine> = engines
        .iter()
        .enumerate()
        .map(|(i, (engine, isolation))| runner::RunEngine {
            name: engine.name().to_string(),
            engine: engine.for_run(&run_id),
            isolation: *isolation,
            proxy: if lanes { runner::ProxyHandles::of_lane(&proxy, &format!("e{}", i + 1)) } else { runner::ProxyHandles::of(&proxy) },
        })
        .collect();
    let shard = spec.shard.map_or_else(String::new, |s| format!(" (shard {s})"));
    let builds = plan.builds_on(&run_engines);
    say.line(&format!("run {run_id}{shard}: {} cells, {builds} builds; results go to {}", plan.cells.len(), results_path.display()));
    if run_engines.len() > 1 {
        let names: Vec<String> = run_engines.iter().map(|e| format!("{} ({}, {})", e.name, e.engine.version, e.isolation.name())).collect();
        let how = if args.matrix { "every engine builds every cell (--matrix), one at a time" } else { "each builds one cell at a time" };
        say.line(&format!("engines: {}; {how}", names.join(", ")));
    }
    let (stop, mut interrupt) = tokio::sync::watch::channel(false);
    let (shown, run) = (results_path.display().to_string(), run_id.clone());
    // Listening from now on: a signal that comes while the first is handled is kept for the next wait.
    let mut signals = StopSignals::listen()?;
    tokio::spawn(async move {
        let first = signals.next().await;
        eprintln!("\nlayerbench: {first}: cancelling the build in flight and stopping; again to exit at once");
        let _ = stop.send(true);
        let second = signals.next().await;
        // Every write of the results file is atomic: it holds each build finished so far, whole.
        eprintln!("layerbench: {second} again: exiting now; the results so far are in {shown} (`layerbench clean --run {run}` removes what the build in flight left)");
        std::process::exit(i32::from(crate::cli::EXIT_INTERRUPTED));
    });
    let mut progress = progress::Progress::start(spec.verbose, run_engines.len(), builds);
    let outcome = runner::run(&run_engines, &plan, &mut results, &mut |e| progress.event(e), &mut interrupt).await;
    progress.finish();
    proxy.stop().await;
    outcome?;
    Ok((results, results_path))
}

/// Ctrl-C (SIGINT) and SIGTERM, which stop a run the same way.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("failed to listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?,
        })
    }

    /// Waits for the next one and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupt (Ctrl-C)",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
