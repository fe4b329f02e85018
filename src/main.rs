//! The `layerbench` binary: parse the command line, run the command, print what happened, map failures to exit codes.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use layerbench::cli::{BuilderChoice, CacheChoice, CheckArgs, Cli, Command, EngineArgs, EngineCommand, RunArgs};
use layerbench::engine::owned::{self, Liveness};
use layerbench::engine::{Engine, StepReport};
use layerbench::goproxy::server::{ProxyConfig, ProxyServer, Shaping, Upstream};
use layerbench::goproxy::upstream_from_env;
use layerbench::goproxy::store::Recipe;
use layerbench::analysis::expect::{Judgement, Outcome, TemplateMatch};
use layerbench::project::Project;
use layerbench::results::{BuildRecord, Builder, CacheState, Outcome as BuildOutcome, Probe, Results};
use layerbench::runner::Variant;
use layerbench::setup::StoreSpec;
use layerbench::{paths, progress, runner, selftest, setup, shipped, table};

/// Exit codes: 0 success, 1 a check failed, 2 usage (clap) or a bad project or results file, 3 the environment could not be provisioned or reached.
const EXIT_CHECK_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_ENVIRONMENT: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
        Err(e) if matches!(e.downcast_ref::<runner::RunError>(), Some(runner::RunError::Interrupted(_))) => {
            eprintln!("layerbench: {e:#}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("layerbench: error: {}", error_text(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("layerbench: error: {}", error_text(&e));
            ExitCode::from(EXIT_ENVIRONMENT)
        }
    }
}

/// The error and its causes, leaving out a cause the message above it already quotes.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs one command; `Ok(false)` means it ran but a check failed.
async fn run(command: Command) -> Result<bool> {
    let cache = paths::cache_dir();
    let store = paths::store_dir();
    let mirror = paths::debian_mirror();
    match command {
        Command::Setup { pull } => {
            let (_, p) = setup::provision(pull, &cache, &store, &mirror).await?;
            print_provisioned(&p, &Say::Stdout);
            Ok(true)
        }
        Command::Images { pull, names } => {
            let engine = Engine::connect().await?;
            let images = if names.is_empty() {
                layerbench::images::ensure_base_images(&engine, pull, &cache, &mirror).await?
            } else {
                layerbench::images::ensure_images(&engine, &names, pull, &cache, &mirror).await?
            };
            for image in images {
                println!("{}  {}  {}  [{}]", image.name, short(&image.id), image.provenance, image.action);
            }
            Ok(true)
        }
        Command::Store { out, recipe, force } => {
            let is_default = recipe.is_none();
            let recipe = match recipe {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
                    Recipe::parse(&text, &path.display().to_string())?
                }
                None => Recipe::default_recipe(),
            };
            // A recipe of the user's goes to its own folder: the built-in store is never overwritten by it.
            let out = out.unwrap_or_else(|| if is_default { store } else { setup::recipe_store_dir(&recipe, &cache) });
            let status = setup::ensure_store(&recipe, &mirror, &cache, &out, force)?;
            println!(
                "module store {}: {} ({} modules, {} versions, {:.1} MB of zips, {:.1} s)",
                status.path.display(),
                status.action,
                status.modules,
                status.versions,
                status.zip_bytes as f64 / 1e6,
                status.seconds
            );
            Ok(true)
        }
        Command::Proxy { store: dir, port, latency_ms, bandwidth, upstream, cache: cache_dir } => {
            let mut config = ProxyConfig::loopback(dir.unwrap_or(store), port);
            config.shaping = Shaping { latency_ms, bandwidth_bytes_per_sec: bandwidth };
            config.upstream = upstream
                .or_else(layerbench::goproxy::upstream_from_env)
                .map(|url| Upstream::new(url, cache_dir.unwrap_or_else(paths::upstream_cache_dir)));
            let proxy = ProxyServer::start(config.clone()).await?;
            println!("serving GOPROXY={} (Ctrl-C stops)", proxy.url());
            if let Some(up) = &config.upstream {
                println!("forwarding what the store lacks to {} (answers kept in {})", up.url, up.cache_folder().display());
            }
            let log = proxy.log();
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                        for r in log.since(seen) {
                            println!("{} {} {} bytes {:.1} ms from {}", r.status, r.path, r.bytes, r.duration_ms, r.served_from.as_str());
                            seen += 1;
                        }
                    }
                }
            }
            proxy.stop().await;
            Ok(true)
        }
        Command::Selftest { app, proxy_port, pull, no_cache } => {
            let (engine, p) = setup::provision(pull, &cache, &store, &mirror).await?;
            print_provisioned(&p, &Say::Stdout);
            let app = match app {
                Some(app) => app,
                None => layerbench::shipped::sample_app(&cache).with_context(|| format!("failed to write the bundled sample below {}", cache.display()))?,
            };
            println!("selftest: building {} ({}) with BuildKit", app.display(), selftest::SELFTEST_DOCKERFILE);
            let mut progress = |s: &StepReport| println!("{}", progress::step_line(s));
            let report = selftest::run_selftest(&engine, &app, &store, proxy_port, no_cache, &mut progress).await?;
            let zips = report.proxy_requests.iter().filter(|r| r.path.ends_with(".zip")).count();
            println!(
                "selftest: built {} in {:.1} s; image {} is {:.1} MB, user `{}`",
                selftest::SELFTEST_TAG,
                report.build_seconds,
                short(&report.image_id),
                report.image_size_bytes as f64 / 1e6,
                report.image_user
            );
            println!(
                "selftest: the module proxy answered {} requests ({} module zips, {} bytes), {} unanswered",
                report.proxy_requests.len(),
                zips,
                report.proxy_requests.iter().map(|r| r.bytes).sum::<u64>(),
                report.proxy_misses().len()
            );
            if report.proxy_requests.is_empty() {
                println!("selftest: every module came from the build cache (`--no-cache` fetches them all again)");
            }
            println!("selftest: the service's self-test (no network) exited {}:", report.exit_code);
            for line in report.output.lines() {
                println!("  | {line}");
            }
            let failures = report.failures();
            if failures.is_empty() {
                println!("selftest: PASSED");
                Ok(true)
            } else {
                for f in &failures {
                    println!("selftest: FAILED: {f}");
                }
                Ok(false)
            }
        }
        Command::Run(args) => run_command(args).await,
        Command::Check(args) => check_command(args).await,
        Command::Report { results: path } => {
            let results = layerbench::results::Results::read(&path).map_err(BadInput::from_error)?;
            print_report(&layerbench::report::write(&results, &path)?);
            Ok(true)
        }
        Command::Merge { files, out } => {
            let mut shards = Vec::new();
            for path in files {
                let results = Results::read(&path).map_err(BadInput::from_error)?;
                if let Some(n) = results.records.iter().position(|r| r.cell.is_none()) {
                    return Err(BadInput::from_error(anyhow::anyhow!(
                        "{}: record {} carries no `cell` index (the file was written before layerbench numbered a run's cells, or by hand): shards without it cannot be matched up",
                        path.display(),
                        n + 1
                    )));
                }
                shards.push((path, results));
            }
            let count = shards.len();
            let merged = layerbench::merge::merge(shards).map_err(BadInput::from_error)?;
            let path = out.join("results.json");
            layerbench::durable::check_writable(&out).with_context(|| format!("the folder {} cannot be written", out.display()))?;
            merged.write(&path)?;
            let cells = merged.records.iter().filter_map(|r| r.cell).collect::<std::collections::BTreeSet<_>>().len();
            println!("merged {count} shards: {} builds in {cells} cells{}; results: {}", merged.records.len(), if merged.complete { "" } else { " (a shard is incomplete)" }, path.display());
            print_report(&layerbench::report::write(&merged, &path)?);
            Ok(true)
        }
        Command::Verdicts { results, json } => {
            let results = layerbench::results::Results::read(&results).map_err(BadInput::from_error)?;
            // A matrix's verdicts are its first engine's; the text names the claims whose verdict differs on another.
            let reported = layerbench::analysis::engines::reported_builds(&results);
            let verdicts = layerbench::analysis::verdicts::verdicts(reported.as_ref().unwrap_or(&results));
            if json {
                println!("{}", serde_json::to_string_pretty(&verdicts)?);
            } else {
                print!("{}", table::verdict_table(&verdicts));
                if let Some(d) = layerbench::analysis::engines::engine_differences(&results) {
                    println!();
                    print!("{}", table::engine_differences(&d));
                }
            }
            Ok(true)
        }
        Command::Compare { before, after, json, fail_on_regression } => {
            let (a, b) = (
                layerbench::results::Results::read(&before).map_err(BadInput::from_error)?,
                layerbench::results::Results::read(&after).map_err(BadInput::from_error)?,
            );
            let steps = layerbench::analysis::compare::compare(&a, &b);
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                print!("{}", table::compare_table(&steps));
            }
            Ok(!(fail_on_regression && steps.iter().any(|s| s.is_regression())))
        }
        Command::Clean { engine: Some(name), .. } => {
            let engine = Engine::connect_spec(&name).await?;
            let e = engine.empty().await?;
            println!(
                "clean: emptied engine {name}: {} containers, {} images, {} build cache records ({:.1} MB) removed; {} base images kept",
                e.containers,
                e.images,
                e.cache_records,
                e.cache_bytes as f64 / 1e6,
                e.kept_images
            );
            Ok(true)
        }
        Command::Engine(command) => engine_command(command, &cache, &mirror).await,
        Command::Clean { base_images, run, engine: None } => {
            let engine = Engine::connect().await?;
            let kinds: Option<&[&str]> = if base_images { None } else { Some(&["build", "selftest", "run"]) };
            let removed = engine.remove_labelled(kinds, run.as_deref()).await?;
            for r in &removed {
                println!("removed {r}");
            }
            let kept = removed.iter().filter(|r| r.starts_with("kept")).count();
            println!("clean: removed {} objects carrying layerbench's label, kept {kept}", removed.len() - kept);
            Ok(true)
        }
    }
}

/// `layerbench engine start|ls|stop`: the engines layerbench owns.
async fn engine_command(command: EngineCommand, cache: &std::path::Path, mirror: &str) -> Result<bool> {
    let engines = paths::engines_dir();
    match command {
        EngineCommand::Start { name, release, image_store } => {
            let options = owned::StartOptions { release, image_store };
            let state = owned::start_dockerd(&engines, &name, &options, cache, mirror).await?;
            let connected = Engine::connect_spec(&name).await;
            println!(
                "engine {name}: dockerd {}(pid {}) answers on {}; {} image store; data root {}, log {}",
                connected.as_ref().map_or(String::new(), |e| format!("{} (API {}, {}) ", e.version.engine, e.version.api, state.release)),
                state.pid.unwrap_or_default(),
                state.socket.display(),
                state.image_store.as_str(),
                state.data_root.display(),
                state.log.display()
            );
            let loaded = match connected {
                Ok(engine) => layerbench::images::ensure_base_images(&engine, false, cache, mirror).await.map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            let images = match loaded {
                Ok(images) => images,
                Err(e) => {
                    // Nothing half-made is left running.
                    let _ = tokio::task::spawn_blocking({
                        let (engines, name) = (engines.clone(), name.clone());
                        move || owned::stop(&engines, &name, false)
                    })
                    .await;
                    return Err(e.context(format!("loading the base images into engine {name} failed; the engine was stopped")));
                }
            };
            for image in &images {
                println!("engine {name}: base image {} {} [{}] {}", image.name, short(&image.id), image.action, image.provenance);
            }
            owned::record_base_images(&engines, &name, images.iter().map(|i| i.id.clone()).collect())?;
            println!("use it:   layerbench run --engine {name} …   (or DOCKER_HOST={} /usr/bin/docker …)", state.docker_host());
            println!("empty it: layerbench clean --engine {name}");
            println!("stop it:  layerbench engine stop --name {name}   (--keep keeps its data root for a quicker start)");
            Ok(true)
        }
        EngineCommand::Ls => {
            let listed = owned::list(&engines)?;
            if listed.is_empty() {
                println!("layerbench owns no engines (none under {}); `layerbench engine start` starts one", engines.display());
                return Ok(true);
            }
            println!("{:<16} {:<9} {:<9} {:<14} {:<5} {:<8} {:<11} {:>6} {:>7}", "NAME", "STATE", "RELEASE", "DOCKER", "API", "BUILDKIT", "STORE", "IMAGES", "DISK");
            for e in listed {
                let release = e.state.as_ref().map_or("?", |s| s.release.as_str());
                let [mut docker, mut api, mut buildkit, mut store, mut images] = ["-".to_string(), "-".into(), "-".into(), "-".into(), "-".into()];
                if e.liveness == Liveness::Running {
                    if let Ok(engine) = Engine::connect_spec(&e.name).await {
                        docker = engine.version.engine.clone();
                        api = engine.version.api.clone();
                        // Debian's builds do not stamp BuildKit's version: the release's vendored one, marked `~`.
                        buildkit = layerbench::engine::release::vendored_buildkit(&docker).map_or("?".to_string(), |v| format!("~{v}"));
                        store = engine.machine().await.map_or("?".to_string(), |m| m.image_store);
                        images = engine.image_count().await.map_or_else(|_| "?".to_string(), |n| n.to_string());
                    }
                } else if let Some(state) = &e.state {
                    store = state.image_store.as_str().to_string();
                }
                println!(
                    "{:<16} {:<9} {:<9} {:<14} {:<5} {:<8} {:<11} {:>6} {:>5.1}GB",
                    e.name,
                    e.liveness.as_str(),
                    release,
                    docker,
                    api,
                    buildkit,
                    store,
                    images,
                    e.disk_bytes as f64 / 1e9
                );
                println!("  socket {}", e.socket.display());
            }
            println!("BUILDKIT: `~0.13` is the BuildKit the Docker release vendors (Debian's builds do not stamp it).");
            Ok(true)
        }
        EngineCommand::Stop { name, all, keep } => {
            let names = if all { owned::list(&engines)?.into_iter().map(|e| e.name).collect() } else { vec![name] };
            if names.is_empty() {
                println!("layerbench owns no engines: nothing to stop");
            }
            for name in names {
                let engines = engines.clone();
                let stopped = tokio::task::spawn_blocking(move || owned::stop(&engines, &name, keep)).await.context("the stop task failed")??;
                println!(
                    "engine {}: {}; {} helper processes and {} mounts cleared; {}",
                    stopped.name,
                    match (stopped.pid, stopped.killed) {
                        (Some(pid), false) => format!("dockerd (pid {pid}) stopped"),
                        (Some(pid), true) => format!("dockerd (pid {pid}) killed after it ignored SIGTERM"),
                        (None, _) => "no dockerd was running".to_string(),
                    },
                    stopped.helpers_stopped,
                    stopped.unmounted,
                    if stopped.kept_data { "data root kept" } else { "folder removed" }
                );
            }
            Ok(true)
        }
    }
}

/// `layerbench run`: the cells from a suite or the options, the run, then tables, verdicts and the report.
async fn run_command(args: RunArgs) -> Result<bool> {
    let cwd = std::env::current_dir().context("failed to read the current folder")?;
    let suite = match &args.suite {
        Some(name) => Some(layerbench::suite::load(name).map_err(BadInput::from_error)?),
        None => None,
    };
    let app_arg = args
        .app
        .clone()
        .or_else(|| suite.as_ref().and_then(|(s, path)| s.app.as_ref().map(|a| resolve_beside(a, path))))
        .unwrap_or_else(|| ".".to_string());
    let app = app_folder(&app_arg, &cwd).map_err(BadInput::from_error)?;
    let context = match &args.context {
        Some(c) => std::fs::canonicalize(cwd.join(c)).with_context(|| format!("the build context {} does not exist", c.display())).map_err(BadInput::from_error)?,
        None => app.clone(),
    };
    let scenarios_dir = args.scenarios_dir.as_deref();
    let cells = match &suite {
        Some((suite, _)) => layerbench::suite::cells(suite, &app, scenarios_dir).map_err(BadInput::from_error)?,
        None => {
            let for_sample = app_arg == shipped::SAMPLE_APP || app == paths::sample_app_dir();
            let scenarios = shipped::select_scenarios(scenarios_dir, &args.scenarios, for_sample).map_err(BadInput::from_error)?;
            let mut variants = if args.dockerfiles.is_empty() {
                runner::variants(&app, &args.variants).map_err(BadInput::from_error)?
            } else {
                args.dockerfiles.iter().map(|d| Variant::from_arg(d, &cwd)).collect::<Result<Vec<_>, _>>().map_err(BadInput::from_error)?
            };
            runner::check_unique(&variants).map_err(BadInput::from_error)?;
            let build_args = parse_build_args(&args.build_args).map_err(BadInput::from_error)?;
            let probe = match &args.probe {
                Some(cmd) => Some(Probe {
                    command: shlex::split(cmd).filter(|c| !c.is_empty()).with_context(|| format!("--probe {cmd:?} is not a command line")).map_err(BadInput::from_error)?,
                    expected_exit: args.probe_exit,
                    timeout_seconds: args.probe_timeout,
                }),
                None => None,
            };
            for v in &mut variants {
                v.target.clone_from(&args.target);
                v.build_args.extend(build_args.clone());
                v.probe.clone_from(&probe);
                v.inspect_binary.clone_from(&args.inspect_binary);
            }
            let builders = match args.builder {
                BuilderChoice::Buildkit => vec![Builder::Buildkit],
                BuilderChoice::Legacy => vec![Builder::Legacy],
                BuilderChoice::Both => vec![Builder::Buildkit, Builder::Legacy],
            };
            runner::cells(&variants, &scenarios, &builders, args.repetitions.max(1))
        }
    };
    let cache_state = match args.cache {
        CacheChoice::Cold => CacheState::Cold,
        CacheChoice::Warm => CacheState::Warm,
    };
    let (results, results_path) = execute(
        RunSpec {
            app,
            context,
            cells,
            cache_state,
            suite: args.suite.clone(),
            build_timeout: suite.as_ref().and_then(|(s, _)| s.build_timeout),
            frontend: suite.as_ref().and_then(|(s, _)| s.frontend),
            resume: args.resume.clone(),
            verbose: args.verbose,
            shard: args.shard,
        },
        &args.engine,
        &Say::Stdout,
    ).await?;
    print!("{}", table::cell_tables(&results));
    print!("{}", table::statistics_table(&results));
    println!();
    print!("{}", table::findings_per_engine(&results));
    if let Some(line) = table::overhead(&results) {
        print!("{}", table::fit(&line));
    }
    // A matrix's verdicts are its first engine's; the engines table below names those that differ on another.
    let reported = layerbench::analysis::engines::reported_builds(&results);
    if suite.is_some() {
        let on = reported.as_ref().and_then(|r| r.records.first()).map_or_else(String::new, |r| format!(" on {}", r.engine));
        println!("\n{}", table::fit(&format!("verdicts these builds settle{on} (`layerbench verdicts {}` lists every claim):", results_path.display())));
        print!("{}", table::settled_verdicts(&layerbench::analysis::verdicts::verdicts(reported.as_ref().unwrap_or(&results))));
    }
    if let Some(differences) = layerbench::analysis::engines::engine_differences(&results) {
        println!();
        print!("{}", table::engine_differences(&differences));
    }
    println!();
    print_report(&layerbench::report::write(&results, &results_path)?);
    let failed: Vec<&BuildRecord> = results.records.iter().filter(|r| matches!(r.outcome, BuildOutcome::Failed | BuildOutcome::TimedOut)).collect();
    let probes_failed = results
        .records
        .iter()
        .filter(|r| r.inspection.as_ref().is_some_and(|i| i.error.is_some() || i.runtime.as_ref().is_some_and(|rt| !rt.passed)))
        .count();
    println!(
        "{}",
        table::fit(&format!(
            "run {}: {} builds recorded, {} failed, {probes_failed} with a failed inspection or probe; results: {}",
            results.run_id,
            results.records.len(),
            failed.len(),
            results_path.display()
        ))
    );
    for r in &failed {
        let error = r.error_with_output().unwrap_or_else(|| "(no message)".into()).replace('\n', "\n    ");
        println!("{}", table::fit(&format!("  {} {} × {} · {} · {}: {error}", r.outcome.as_str().to_uppercase(), r.variant, r.scenario, r.builder.name(), r.step)));
    }
    Ok(failed.is_empty() && probes_failed == 0)
}

/// `layerbench check`: read the project file, build exactly the cells its expectations need (or read `--from`), judge, print, export.
async fn check_command(args: CheckArgs) -> Result<bool> {
    let say = if args.json { Say::Stderr } else { Say::Stdout };
    let config = args.config.clone().unwrap_or_else(|| std::path::PathBuf::from(layerbench::project::PROJECT_FILE));
    let project = Project::load(&config).map_err(BadInput::from_error)?;
    let baseline = match &args.baseline {
        Some(path) => Some(Results::read(path).map_err(BadInput::from_error)?),
        None => None,
    };
    let results = match &args.from {
        Some(path) => Results::read(path).map_err(BadInput::from_error)?,
        None => {
            let cwd = std::env::current_dir().context("failed to read the current folder")?;
            let app = app_folder(&project.app, &cwd)?;
            let context = project.context.clone().unwrap_or_else(|| app.clone());
            let cells = project.cells();
            let builds: usize = cells.iter().map(|c| c.builds()).sum();
            say.line(&format!(
                "check {}: {} templates, {} expectations; {builds} builds in {} cells (only the cells the expectations need; only time expectations repeat)",
                config.display(),
                project.templates.len(),
                project.templates.iter().map(|t| t.expectations.len()).sum::<usize>(),
                cells.len()
            ));
            let spec = RunSpec { app, context, cells, cache_state: CacheState::Cold, suite: None, build_timeout: project.build_timeout, frontend: project.frontend, resume: None, verbose: false, shard: None };
            let (results, results_path) = execute(spec, &args.engine, &say).await?;
            for line in table::cell_tables(&results).lines() {
                say.line(line);
            }
            say.line(&format!("check: results in {}", results_path.display()));
            results
        }
    };
    // Only builds of the templates as this project defines them are judged: a template the results hold no such build of is refused.
    let templates = project.expectations();
    let source = args.from.as_ref().map_or_else(|| "this run".to_string(), |p| p.display().to_string());
    let mut unmatched = Vec::new();
    for t in &templates {
        match t.matches(&results) {
            TemplateMatch::Same => {}
            TemplateMatch::Unrecorded => say.line(&format!(
                "check: {source} does not record what {} was built from (written before layerbench recorded Dockerfile digests): its builds are matched by the template's name alone",
                t.name
            )),
            TemplateMatch::Differs(why) => unmatched.push(format!("{}: its builds there are of another template: {why}", t.name)),
            TemplateMatch::Absent => unmatched.push(format!("{}: no build of that name", t.name)),
        }
    }
    if !unmatched.is_empty() {
        return Err(BadInput::from_error(anyhow::anyhow!(
            "{source} holds no build of {} of the templates {} defines, so there is nothing to judge them by:\n  {}\nBuild them (`layerbench check` without --from), or give --from a run of these Dockerfiles",
            unmatched.len(),
            config.display(),
            unmatched.join("\n  ")
        )));
    }
    // A matrix (built now, or read with --from) is judged on each engine's builds alone.
    let engines = results.record_engines();
    if args.engine.matrix && engines.len() < 2 {
        return Err(BadInput::from_error(anyhow::anyhow!(
            "--matrix judges every expectation on every engine, and the results hold builds of {} engine{} ({})",
            engines.len(),
            if engines.len() == 1 { "" } else { "s" },
            engines.join(", ")
        )));
    }
    let per_engine = args.engine.matrix || results.is_matrix();
    let judgements = if per_engine {
        say.line(&format!("check: every expectation is judged on each engine: {}", engines.join(", ")));
        layerbench::analysis::expect::judge_per_engine(&templates, &results, baseline.as_ref())
    } else {
        layerbench::analysis::expect::judge(&templates, &results, baseline.as_ref())
    };
    let failed = |j: &&Judgement| j.outcome == Outcome::Fail || (args.strict && j.outcome == Outcome::Inconclusive);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&judgements)?);
    } else {
        print!("{}", table::check_table(&judgements));
    }
    if let Some(path) = &args.junit {
        let xml = layerbench::report::junit_xml(&judgements, args.strict, &format!("layerbench check {}", config.display()));
        layerbench::durable::write(path, xml.as_bytes()).with_context(|| format!("failed to write the JUnit file {}", path.display()))?;
        say.line(&format!("check: JUnit XML in {}", path.display()));
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for j in judgements.iter().filter(failed) {
            // An inconclusive judgement that --strict fails is annotated as the failure it is.
            let j = Judgement { outcome: Outcome::Fail, ..(*j).clone() };
            if let Some(line) = layerbench::report::github_annotation(&j, &j.dockerfile) {
                // With --json on stdout they go to stderr, where the Actions runner reads workflow commands too.
                say.line(&line);
            }
        }
    }
    let count = |o: Outcome| judgements.iter().filter(|j| j.outcome == o).count();
    // One expectation is judged once per build it covers: the count says both, as the first line does.
    let expectations: usize = project.templates.iter().map(|t| t.expectations.len()).sum();
    say.line(&format!(
        "check: {} judgements of {expectations} expectations: {} pass, {} FAIL, {} inconclusive{}",
        judgements.len(),
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Inconclusive),
        if args.strict && count(Outcome::Inconclusive) > 0 { " (--strict: inconclusive fails)" } else { "" }
    ));
    Ok(!judgements.iter().any(|j| failed(&j)))
}

/// Input the user gave that cannot be used (a project file, a results file): exit 2, like a usage error.
#[derive(Debug)]
struct BadInput(anyhow::Error);

impl BadInput {
    fn from_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(BadInput(e.into()))
    }
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", error_text(&self.0))
    }
}

impl std::error::Error for BadInput {}

/// `@sample` (the bundled sample, written to the cache) or a folder relative to `cwd`.
fn app_folder(app: &str, cwd: &std::path::Path) -> Result<std::path::PathBuf> {
    if app == shipped::SAMPLE_APP {
        let cache = paths::cache_dir();
        return shipped::sample_app(&cache).with_context(|| format!("failed to write the bundled sample below {}", cache.display()));
    }
    std::fs::canonicalize(cwd.join(app)).with_context(|| format!("the app folder {app} does not exist"))
}

/// Where status lines go: stdout, or stderr when stdout carries JSON.
enum Say {
    Stdout,
    Stderr,
}

impl Say {
    fn line(&self, text: &str) {
        match self {
            Say::Stdout => println!("{}", table::fit(text)),
            Say::Stderr => eprintln!("{}", table::fit(text)),
        }
    }
}

/// What a run builds, however its cells were chosen.
struct RunSpec {
    app: std::path::PathBuf,
    context: std::path::PathBuf,
    cells: Vec<runner::Cell>,
    cache_state: CacheState,
    suite: Option<String>,
    /// The suite's or project file's build timeout (`--build-timeout` overrides it).
    build_timeout: Option<std::time::Duration>,
    /// The suite's or project file's frontend (`--frontend` overrides it).
    frontend: Option<layerbench::results::Frontend>,
    /// The results file of the run this one resumes.
    resume: Option<std::path::PathBuf>,
    /// Every step of every build in the log, on a terminal too.
    verbose: bool,
    /// The share of the cells this run builds.
    shard: Option<layerbench::results::Shard>,
}

/// The engines `--engine` names (the default one when none), each with its isolation; two with one name are refused.
async fn connect_engines(specs: &[String]) -> Result<Vec<(Engine, layerbench::results::Isolation)>> {
    use layerbench::results::Isolation;
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
async fn execute(spec: RunSpec, args: &EngineArgs, say: &Say) -> Result<(layerbench::results::Results, std::path::PathBuf)> {
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
    layerbench::durable::check_writable(results_dir).with_context(|| format!("the results folder {} cannot be written", results_dir.display()))?;
    let engines = connect_engines(&args.engines).await?;
    if args.matrix {
        runner::check_matrix(engines.len(), spec.shard).map_err(BadInput::from_error)?;
    }
    let mut p = setup::provision_on(&engines[0].0, false, &cache, &store_spec, &mirror).await?;
    // The images the templates name: stand-ins of missing ones are made before the first build.
    let named = runner::base_image_names(&cells);
    let made = layerbench::images::ensure_stand_ins(&engines[0].0, &named, &cache, &mirror).await?;
    for image in made {
        if !p.base_images.iter().any(|b| b.name == image.name) {
            p.base_images.push(image);
        }
    }
    print_provisioned(&p, say);
    for (engine, _) in &engines[1..] {
        // Every engine builds from the same base images (made, or loaded from the cached root filesystems, as needed).
        let mut images = layerbench::images::ensure_base_images(engine, false, &cache, &mirror).await?;
        images.extend(layerbench::images::ensure_stand_ins(engine, &named, &cache, &mirror).await?);
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
        store: layerbench::goproxy::layout::StoreLayout::new(&store),
        inspect: true,
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
        std::process::exit(i32::from(EXIT_INTERRUPTED));
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

/// A suite's `app`: `@sample`, or a folder relative to the suite file.
fn resolve_beside(app: &str, suite_file: &std::path::Path) -> String {
    if app == shipped::SAMPLE_APP || std::path::Path::new(app).is_absolute() {
        return app.to_string();
    }
    suite_file.parent().unwrap_or(std::path::Path::new(".")).join(app).display().to_string()
}

fn parse_build_args(args: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--build-arg {a:?} is not KEY=VALUE"),
        })
        .collect()
}

fn print_report(files: &layerbench::report::ReportFiles) {
    let line = format!(
        "report: {} ({} charts as SVG and PNG in {}; summary {})",
        files.report.display(),
        files.charts.len() / 2,
        files.report.parent().map_or_else(|| "charts".into(), |d| d.join("charts").display().to_string()),
        files.summary.display()
    );
    println!("{}", table::fit(&line));
}

fn print_provisioned(p: &setup::Provisioned, say: &Say) {
    say.line(&format!("engine: Docker {} (API {})", p.engine.engine, p.engine.api));
    for image in &p.base_images {
        say.line(&format!("base image {}: {} [{}] {}", image.name, image.provenance, image.action, short(&image.id)));
    }
    say.line(&format!(
        "module store {}: {} ({} modules, {} versions, {:.1} MB, {:.1} s)",
        p.store.path.display(),
        p.store.action,
        p.store.modules,
        p.store.versions,
        p.store.zip_bytes as f64 / 1e6,
        p.store.seconds
    ));
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
