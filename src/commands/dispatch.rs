//! Which command runs, and the commands small enough to need no file of their own: setup, images, store, proxy, selftest, report, merge, verdicts, compare, clean.

use anyhow::{Context, Result};

use crate::cli::Command;
use crate::cli::{BadInput, Say, print_provisioned, short};
use crate::engine::{Engine, StepReport};
use crate::goproxy::server::{ProxyConfig, ProxyServer, Shaping, Upstream};
use crate::goproxy::store::Recipe;
use crate::results::Results;
use crate::{paths, progress, selftest, setup, shipped, table};

use super::check::check_command;
use super::engine::engine_command;
use super::run::run_command;

/// Runs one command; `Ok(false)` means it ran but a check failed.
pub async fn dispatch(command: Command) -> Result<bool> {
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
                crate::images::ensure_base_images(&engine, pull, &cache, &mirror).await?
            } else {
                crate::images::ensure_images(&engine, &names, pull, &cache, &mirror).await?
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
                .or_else(crate::goproxy::upstream_from_env)
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
                None => crate::shipped::sample_app(&cache).with_context(|| format!("failed to write the bundled sample below {}", cache.display()))?,
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
            let results = crate::results::Results::read(&path).map_err(BadInput::from_error)?;
            print_report(&crate::report::write(&results, &path)?);
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
            let merged = crate::merge::merge(shards).map_err(BadInput::from_error)?;
            let path = out.join("results.json");
            crate::durable::check_writable(&out).with_context(|| format!("the folder {} cannot be written", out.display()))?;
            merged.write(&path)?;
            let cells = merged.records.iter().filter_map(|r| r.cell).collect::<std::collections::BTreeSet<_>>().len();
            println!("merged {count} shards: {} builds in {cells} cells{}; results: {}", merged.records.len(), if merged.complete { "" } else { " (a shard is incomplete)" }, path.display());
            print_report(&crate::report::write(&merged, &path)?);
            Ok(true)
        }
        Command::Verdicts { results, json } => {
            let results = crate::results::Results::read(&results).map_err(BadInput::from_error)?;
            // A matrix's verdicts are its first engine's; the text names the claims whose verdict differs on another.
            let reported = crate::analysis::engines::reported_builds(&results);
            let verdicts = crate::analysis::verdicts::verdicts(reported.as_ref().unwrap_or(&results));
            if json {
                println!("{}", serde_json::to_string_pretty(&verdicts)?);
            } else {
                print!("{}", table::verdict_table(&verdicts));
                if let Some(d) = crate::analysis::engines::engine_differences(&results) {
                    println!();
                    print!("{}", table::engine_differences(&d));
                }
            }
            Ok(true)
        }
        Command::Compare { before, after, json, fail_on_regression } => {
            let (a, b) = (
                crate::results::Results::read(&before).map_err(BadInput::from_error)?,
                crate::results::Results::read(&after).map_err(BadInput::from_error)?,
            );
            let steps = crate::analysis::compare::compare(&a, &b);
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


/// `@sample` (the bundled sample, written to the cache) or a folder relative to `cwd`.
pub(super) fn app_folder(app: &str, cwd: &std::path::Path) -> Result<std::path::PathBuf> {
    if app == shipped::SAMPLE_APP {
        let cache = paths::cache_dir();
        return shipped::sample_app(&cache).with_context(|| format!("failed to write the bundled sample below {}", cache.display()));
    }
    std::fs::canonicalize(cwd.join(app)).with_context(|| format!("the app folder {app} does not exist"))
}


/// A suite's `app`: `@sample`, or a folder relative to the suite file.
pub(super) fn resolve_beside(app: &str, suite_file: &std::path::Path) -> String {
    if app == shipped::SAMPLE_APP || std::path::Path::new(app).is_absolute() {
        return app.to_string();
    }
    suite_file.parent().unwrap_or(std::path::Path::new(".")).join(app).display().to_string()
}

pub(super) fn parse_build_args(args: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--build-arg {a:?} is not KEY=VALUE"),
        })
        .collect()
}

pub(super) fn print_report(files: &crate::report::ReportFiles) {
    let line = format!(
        "report: {} ({} charts as SVG and PNG in {}; summary {})",
        files.report.display(),
        files.charts.len() / 2,
        files.report.parent().map_or_else(|| "charts".into(), |d| d.join("charts").display().to_string()),
        files.summary.display()
    );
    println!("{}", table::fit(&line));
}