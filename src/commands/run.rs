//! `layerbench run`: choose the cells, run them, print tables, verdicts and the report.

use anyhow::{Context, Result};

use crate::cli::{BuilderChoice, CacheChoice, RunArgs};
use crate::cli::{BadInput, Say};
use crate::results::{BuildRecord, Builder, CacheState, Outcome as BuildOutcome, Probe};
use crate::run::Variant;
use crate::run::execute::{execute, RunSpec};
use crate::{paths, run as runner, shipped, table};

use super::dispatch::{app_folder, parse_build_args, print_report, resolve_beside};

/// `layerbench run`: the cells from a suite or the options, the run, then tables, verdicts and the report.
pub(super) async fn run_command(args: RunArgs) -> Result<bool> {
    let cwd = std::env::current_dir().context("failed to read the current folder")?;
    let suite = match &args.suite {
        Some(name) => Some(crate::run::suite::load(name).map_err(BadInput::from_error)?),
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
        Some((suite, _)) => crate::run::suite::cells(suite, &app, scenarios_dir).map_err(BadInput::from_error)?,
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
            layer_contents: suite.as_ref().map_or(args.layer_contents, |(s, _)| s.needs_layer_contents()),
        },
        &args.engine,
        &Say::Stdout,
    ).await?;
    print!("{}", table::cell_tables(&results));
    print!("{}", table::statistics_table(&results));
    println!();
    print!("{}", table::findings_per_engine(&results));
    // A matrix's verdicts are its first engine's; the engines table below names those that differ on another.
    let reported = crate::analysis::engines::reported_builds(&results);
    if let Some((suite, _)) = &suite {
        let on = reported.as_ref().and_then(|r| r.records.first()).map_or_else(String::new, |r| format!(" on {}", r.engine));
        let which = if suite.claims.is_some() { "of the suite's claims " } else { "" };
        println!("\n{}", table::fit(&format!("verdicts {which}these builds settle{on} (`layerbench verdicts {}` lists every claim):", results_path.display())));
        let verdicts = crate::analysis::verdicts::verdicts(reported.as_ref().unwrap_or(&results));
        let of_suite: Vec<_> = verdicts.into_iter().filter(|v| suite.settles(&v.id)).collect();
        print!("{}", table::settled_verdicts(&of_suite));
    }
    if let Some(differences) = crate::analysis::engines::engine_differences(&results) {
        println!();
        print!("{}", table::engine_differences(&differences));
    }
    println!();
    print_report(&crate::report::write(&results, &results_path)?);
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
    // The run's last line: its own cost, beside the builds it measured.
    if let Some(line) = table::overhead(&results) {
        print!("{}", table::fit(&line));
    }
    Ok(failed.is_empty() && probes_failed == 0)
}
