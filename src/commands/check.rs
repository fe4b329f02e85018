//! `layerbench check`: build what a project file's expectations need (or read `--from`), judge, print, export.

use anyhow::{Context, Result};

use crate::cli::CheckArgs;
use crate::cli::{BadInput, Say};
use crate::analysis::expect::{Judgement, Outcome, TemplateMatch};
use crate::run::project::Project;
use crate::results::{CacheState, Results};
use crate::run::execute::{execute, RunSpec};
use crate::table;

use super::dispatch::app_folder;

/// `layerbench check`: read the project file, build exactly the cells its expectations need (or read `--from`), judge, print, export.
pub(super) async fn check_command(args: CheckArgs) -> Result<bool> {
    let say = if args.json { Say::Stderr } else { Say::Stdout };
    let config = args.config.clone().unwrap_or_else(|| std::path::PathBuf::from(crate::run::project::PROJECT_FILE));
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
            let spec = RunSpec { app, context, cells, cache_state: CacheState::Cold, suite: None, build_timeout: project.build_timeout, frontend: project.frontend, resume: None, verbose: false, shard: None, layer_contents: false };
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
        crate::analysis::expect::judge_per_engine(&templates, &results, baseline.as_ref())
    } else {
        crate::analysis::expect::judge(&templates, &results, baseline.as_ref())
    };
    let failed = |j: &&Judgement| j.outcome == Outcome::Fail || (args.strict && j.outcome == Outcome::Inconclusive);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&judgements)?);
    } else {
        print!("{}", table::check_table(&judgements));
    }
    if let Some(path) = &args.junit {
        let xml = crate::report::junit_xml(&judgements, args.strict, &format!("layerbench check {}", config.display()));
        crate::durable::write(path, xml.as_bytes()).with_context(|| format!("failed to write the JUnit file {}", path.display()))?;
        say.line(&format!("check: JUnit XML in {}", path.display()));
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for j in judgements.iter().filter(failed) {
            // An inconclusive judgement that --strict fails is annotated as the failure it is.
            let j = Judgement { outcome: Outcome::Fail, ..(*j).clone() };
            if let Some(line) = crate::report::github_annotation(&j, &j.dockerfile) {
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
