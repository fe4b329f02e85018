//! How one cell is built: its scratch workspace, a baseline build, then one build per scenario step, each inspected and explained.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;


use crate::context::IgnoreDialect;
use crate::dockerfile::DockerfileModel;
use crate::engine::{BuildRequest, Builder, ContextSource, Engine, EngineError, StepReport, KIND_LABEL};
use crate::gomod::modfile::{first_direct_requirement, requirements};
use crate::goproxy::layout::StoreLayout;
use crate::gomod::{next_version, ModuleVersions};
use crate::goproxy::{ModuleSource, Prefetched};
use crate::roles::FIRST_DIRECT_DEPENDENCY;
use crate::scenario::{Change, NEXT_VERSION};
use crate::goproxy::server::ProxyRequest;
use crate::inspect::{inspect_image, InspectOptions, Inspection};
use crate::miss::{base_image_references, explain, BaseImageRef, BuildInputs};
use crate::results::{
    BuildRecord, CacheState, ImageRecord, Outcome,
};
use crate::scenario::Step;
use crate::workspace::{Applied, Layout, Workspace, WorkspaceError};

use super::*;

/// How the context names a Dockerfile the Docker CLI would hide from COPY (see `context`).
pub(super) const HIDDEN_DOCKERFILE_PREFIX: &str = ".dockerfile.";
pub(super) fn cell_id(run_id: &str, cell: &Cell) -> String {
    format!("{run_id}-{}", cell.index + 1)
}

/// The folder name of a cell's scratch workspace: the cell's id, with its engine's name in a matrix (where every
/// engine builds the cell, at the same time).
pub(super) fn workspace_id(run_id: &str, cell: &Cell, slot: &RunEngine, spread: &Spread) -> String {
    match spread {
        Spread::Shared => cell_id(run_id, cell),
        Spread::Matrix { .. } => {
            let engine: String = slot.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
            format!("{}-{engine}", cell_id(run_id, cell))
        }
    }
}

pub(super) fn cell_tag(run_id: &str, cell: &Cell) -> String {
    let clean: String = cell
        .variant
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("layerbench/{}:{}", clean.trim_start_matches(['.', '-', '_']), cell_id(run_id, cell))
}

/// One cell: the workspace, the baseline and each step. Returns an error only
/// when the run must stop (an interrupt, results that cannot be written).
pub(super) async fn run_cell(ctx: &mut RunContext<'_>, cell: &Cell, sink: &Sink<'_, '_>) -> Result<(), RunError> {
    let plan = ctx.plan;
    let slot = ctx.slot;
    let run_id = sink.run_id();
    // The cell's files (its salt and step nonces) are the same on every engine of a matrix, so each builds the same
    // inputs; its scratch folder is the engine's own, as the engines build it at once.
    let id = cell_id(&run_id, cell);
    let mut build_args = cell.variant.build_args.clone();
    build_args.insert("GOPROXY".to_string(), ctx.proxy.url.clone());
    build_args.insert("GOSUMDB".to_string(), "off".to_string());
    let skip_rest = |from_step: usize| sink.skip(cell.builds() - from_step);

    let cell_dir = plan.work_dir.join(workspace_id(&run_id, cell, slot, &plan.spread));
    if cell_dir.exists() {
        let _ = std::fs::remove_dir_all(&cell_dir);
    }
    if *ctx.interrupt.borrow() {
        return Err(RunError::Interrupted(plan.results_path.clone()));
    }
    let copying = Instant::now();
    let made = make_workspace(ctx, cell, &cell_dir, &id).await?.map(|ws| ws.with_origin(&plan.app, &cell.scenario.name));
    ctx.spent.workspace_ms += ms(copying.elapsed());
    let ws = match made {
        Ok(ws) => ws,
        Err(e) => {
            let record = failed_record(cell, "baseline", plan.cache_state, &build_args, format!("the scratch workspace could not be made: {e}"));
            sink.push(slot, cell, record)?;
            skip_rest(0);
            return Ok(());
        }
    };

    // `--frontend builtin`: the copy's Dockerfile loses its `# syntax=` line, and every build of the cell says so.
    let frontend_note = match plan.frontend {
        crate::results::Frontend::Builtin => match ws.drop_syntax_directive() {
            Ok(dropped) => dropped.map(|d| {
                format!("built with the engine's built-in Dockerfile frontend (--frontend builtin): layerbench's copy of the Dockerfile dropped line {}, `{}`", d.line, d.text)
            }),
            Err(e) => {
                let record = failed_record(cell, "baseline", plan.cache_state, &build_args, format!("the Dockerfile's `# syntax=` line could not be dropped: {e}"));
                sink.push(slot, cell, record)?;
                skip_rest(0);
                return Ok(());
            }
        },
        crate::results::Frontend::Directive => None,
    };
    let mut run = CellRun { cell, ws, build_args, previous: None, run_id, frontend_note };
    if cell.builder == Builder::Legacy {
        if let Some(feature) = run.ws.dockerfile_model().ok().and_then(|m| m.buildkit_only_feature()) {
            // Not a failure: the legacy builder cannot run this Dockerfile at all.
            let mut record = run.failed("baseline", plan.cache_state, format!("not applicable: {feature} needs BuildKit"));
            record.outcome = Outcome::NotApplicable;
            sink.push(slot, cell, record)?;
            skip_rest(0);
            return Ok(());
        }
    }

    if plan.cache_state == CacheState::Warm {
        // The warm-up build is not recorded: it only puts the baseline into the cache.
        let _ = build_once(ctx, &mut run, sink, "warm-up", false, &mut |_| {}).await?;
    }
    sink.build_started(&slot.name, cell, "baseline");
    let cold = plan.cache_state == CacheState::Cold;
    let record = build_once(ctx, &mut run, sink, "baseline", cold, &mut |s| sink.event(Event::StepFinished { step: s })).await?;
    let failed = !record.outcome.is_ok();
    sink.push(slot, cell, record)?;
    if failed {
        skip_rest(1);
        return Ok(());
    }

    for (i, step) in cell.scenario.steps.iter().enumerate() {
        let nonce = format!("{id}-{}", i + 1);
        let mut applied = Applied::default();
        let changing = Instant::now();
        let applied_ok = match prefetch_bumps(&run.ws, step, &ctx.proxy.source, &plan.store).await {
            Ok(Some(versions)) => apply_step(&run.ws, step, &nonce, &versions, &mut applied),
            Ok(None) => apply_step(&run.ws, step, &nonce, &plan.store, &mut applied),
            Err(message) => {
                let record = run.failed(&step.name, plan.cache_state, message);
                sink.skip(1);
                sink.push(slot, cell, record)?;
                skip_rest(i + 2);
                return Ok(());
            }
        };
        ctx.spent.workspace_ms += ms(changing.elapsed());
        if let Err(e) = applied_ok {
            let record = run.failed(&step.name, plan.cache_state, e.to_string());
            sink.skip(1);
            sink.push(slot, cell, record)?;
            skip_rest(i + 2);
            return Ok(());
        }
        for (k, v) in &applied.build_args {
            run.build_args.insert(k.clone(), v.clone());
        }
        for (m, v) in &applied.published {
            ctx.proxy.unpublished.publish(m, v);
        }
        sink.build_started(&slot.name, cell, &step.name);
        let mut record = build_once(ctx, &mut run, sink, &step.name, false, &mut |s| sink.event(Event::StepFinished { step: s })).await?;
        record.notes.splice(0..0, applied.notes);
        let failed = !record.outcome.is_ok();
        sink.push(slot, cell, record)?;
        if failed {
            skip_rest(i + 2);
            return Ok(());
        }
    }
    Ok(())
}

pub fn apply_step(ws: &Workspace, step: &Step, nonce: &str, versions: &dyn ModuleVersions, applied: &mut Applied) -> Result<(), WorkspaceError> {
    for change in &step.changes {
        ws.apply(change, nonce, &step.name, versions, applied)?;
    }
    Ok(())
}

/// With an upstream GOPROXY, the versions a step's dependency bumps choose
/// from are the store's and the upstream's, and the chosen version's files are
/// fetched (and kept) before the bump rewrites go.sum with their hashes.
/// `None` without an upstream or without bumps: the store alone answers.
pub async fn prefetch_bumps(ws: &Workspace, step: &Step, source: &ModuleSource, store: &StoreLayout) -> Result<Option<Prefetched>, String> {
    let Some(upstream) = source.upstream_url() else { return Ok(None) };
    let bumps: Vec<(&String, &String)> = step
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::BumpModule { module, version } => Some((module, version)),
            _ => None,
        })
        .collect();
    if bumps.is_empty() {
        return Ok(None);
    }
    let mut prefetched = Prefetched {
        store: store.clone(),
        description: format!("the module store {} and the upstream {upstream}", store.root().display()),
        versions: BTreeMap::new(),
        layouts: BTreeMap::new(),
    };
    let go_mod = std::fs::read_to_string(ws.root().join("go.mod")).unwrap_or_default();
    for (module, version) in bumps {
        // A module or version that cannot be resolved is left to the bump itself, whose error names it.
        let module = if module == FIRST_DIRECT_DEPENDENCY {
            match first_direct_requirement(&go_mod) {
                Some(r) => r.module,
                None => continue,
            }
        } else {
            module.clone()
        };
        let versions = source
            .versions(&module)
            .await
            .map_err(|e| format!("step `{}`: the versions of {module} could not be listed: {e}", step.name))?;
        let version = if version == NEXT_VERSION {
            let current = requirements(&go_mod).into_iter().find(|r| r.module == module).map(|r| r.version);
            match current.and_then(|c| next_version(&c, &versions)) {
                Some(v) => v.as_str().to_string(),
                None => {
                    prefetched.versions.insert(module, versions);
                    continue;
                }
            }
        } else {
            version.clone()
        };
        prefetched.versions.insert(module.clone(), versions);
        let layout = source
            .ensure(&module, &version)
            .await
            .map_err(|e| format!("step `{}`: {module}@{version} could not be fetched: {e}", step.name))?;
        prefetched.layouts.insert((module, version), layout);
    }
    Ok(Some(prefetched))
}

/// One cell while it runs: its workspace, the build arguments its steps have set so far, and what its previous build saw (to explain this build's misses).
pub(super) struct CellRun<'c> {
    cell: &'c Cell,
    ws: Workspace,
    build_args: BTreeMap<String, String>,
    previous: Option<BuildInputs>,
    run_id: String,
    /// Said on every build when the Dockerfile's `# syntax=` line was dropped.
    frontend_note: Option<String>,
}

impl CellRun<'_> {
    fn failed(&self, step: &str, cache_state: CacheState, error: String) -> BuildRecord {
        failed_record(self.cell, step, cache_state, &self.build_args, error)
    }
}

/// The image id each stage's `FROM` resolves to in the engine (none for `scratch` or another stage; unknown when the engine cannot say).
pub(super) async fn resolve_base_images(engine: &Engine, model: &DockerfileModel, build_args: &BTreeMap<String, String>) -> BTreeMap<String, BaseImageRef> {
    let mut out = BTreeMap::new();
    for (stage, reference) in base_image_references(model, build_args) {
        let id = engine.image_id(&reference).await.ok().flatten();
        out.insert(stage, BaseImageRef { reference, id });
    }
    out
}

/// When a BuildKit build failed because the engine could not pull the frontend image the Dockerfile's `# syntax=`
/// line names: one line naming the directive and its line, and the way out.
pub fn unreachable_frontend(dockerfile: &str, builder: Builder, message: &str) -> Option<String> {
    let directive = crate::dockerfile::syntax_directive(dockerfile).filter(|_| builder == Builder::Buildkit)?;
    let repository = directive.image.split(['@', ':']).next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
    let about_frontend = message.contains(&directive.image) || (!repository.is_empty() && message.contains(&format!("{repository}:"))) || message.contains("frontend");
    let unreachable = ["failed to resolve", "failed to do request", "no such host", "pull access denied", "not found", "connection refused", "i/o timeout", "failed to fetch"].iter().any(|m| message.contains(m));
    (about_frontend && unreachable).then(|| {
        let why = message.lines().next().unwrap_or_default().trim();
        format!(
            "the Dockerfile's `{}` (line {}) names a frontend image the engine cannot pull ({why}); build with `--frontend builtin` (or `frontend = \"builtin\"` in the suite or project file) to use the engine's built-in frontend",
            directive.text, directive.line
        )
    })
}

/// Copies the app into the cell's scratch workspace on a blocking thread; an interrupt stops the copy between two
/// files, removes what it made, and stops the run.
pub(super) async fn make_workspace(ctx: &mut RunContext<'_>, cell: &Cell, cell_dir: &Path, id: &str) -> Result<Result<Workspace, WorkspaceError>, RunError> {
    let layout = match Layout::new(&ctx.plan.app, &ctx.plan.context, &cell.variant.dockerfile) {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut copy = tokio::task::spawn_blocking({
        let (stop, tree, id) = (stop.clone(), cell_dir.join("tree"), id.to_string());
        move || Workspace::create_unless(&layout, &tree, Some(&id), &stop)
    });
    tokio::select! {
        made = &mut copy => Ok(made.unwrap_or_else(|e| Err(WorkspaceError::Io { action: "copy", path: cell_dir.to_path_buf(), source: std::io::Error::other(e) }))),
        _ = ctx.interrupt.changed() => {
            stop.store(true, Ordering::Relaxed);
            let _ = copy.await;
            let _ = std::fs::remove_dir_all(cell_dir);
            Err(RunError::Interrupted(ctx.plan.results_path.clone()))
        }
    }
}

/// One build, recorded whatever happens to it: a context that cannot be
/// made, a build error and an engine error all give a failed record. Only an
/// interrupt is an error. Each executed step gets its miss reason against the
/// cell's previous build, and this build becomes the previous one.
pub(super) async fn build_once(
    ctx: &mut RunContext<'_>,
    run: &mut CellRun<'_>,
    sink: &Sink<'_, '_>,
    step: &str,
    no_cache: bool,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<BuildRecord, RunError> {
    let (cell, ws, build_args, run_id) = (run.cell, &run.ws, &run.build_args, run.run_id.as_str());
    let cache_state = ctx.plan.cache_state;
    let failed = |message: String| failed_record(cell, step, cache_state, build_args, message);
    let preparing = Instant::now();
    let model = match ws.dockerfile_model() {
        Ok(m) => m,
        Err(e) => return Ok(failed(format!("the Dockerfile could not be read: {e}"))),
    };
    let model_text = std::fs::read_to_string(ws.dockerfile()).unwrap_or_default();
    // The context the engine's own CLI would send: its release's `.dockerignore` rules.
    let context = match ContextSource::new(ws.context_dir(), ws.dockerfile(), cell.builder, IgnoreDialect::of_engine(&ctx.engine.version), ctx.plan.context_transfer) {
        Ok(c) => c,
        Err(e) => return Ok(failed(format!("the build context could not be made: {e}"))),
    };
    let mut notes: Vec<String> = model
        .stages_running_go_without_goproxy()
        .into_iter()
        .map(|stage| format!("stage `{stage}` runs the go command but declares no `ARG GOPROXY`: its module downloads do not go through layerbench's proxy (and are not recorded)"))
        .collect();
    notes.extend(run.frontend_note.clone());
    for (line, kind, id) in model.session_mounts() {
        let what = if kind == "secret" { format!("the secret `{id}`") } else { format!("the SSH agent `{id}`") };
        notes.push(format!(
            "line {line} mounts {what}: layerbench provides no secrets and forwards no SSH agent, so the step runs without it (a mount marked `required=true` fails the build); its content is in no cache key either way"
        ));
    }
    if cell.builder == Builder::Buildkit && context.dockerfile().starts_with(HIDDEN_DOCKERFILE_PREFIX) {
        notes.push(format!(
            "the Dockerfile is in this build's context as `{}`: the Docker CLI hides it from COPY (the ignore rules exclude it, or it lies outside the context), but BuildKit reads it from the tar layerbench sends, so an edit of the Dockerfile can miss a `COPY . .` that the CLI's build would hit",
            context.dockerfile()
        ));
    }
    // What this build sees, for the miss reasons; its context files come from the walk that sends them.
    let base_images = resolve_base_images(ctx.engine, &model, build_args).await;
    // A base image the engine lacks would be pulled by the build; here no registry answers, and the stand-ins were
    // made before the first build: a missing one has none, and the build does not start.
    for image in base_images.values().filter(|b| b.id.is_none()).map(|b| &b.reference) {
        if let Ok(None) = ctx.engine.image(image).await {
            return Ok(failed(crate::images::missing_image_message(image, ctx.engine.name())));
        }
    }
    let mut labels = BTreeMap::new();
    labels.insert(KIND_LABEL.to_string(), "build".to_string());
    labels.insert(RUN_LABEL.to_string(), run_id.to_string());
    let request = BuildRequest {
        what: format!("{} ({})", cell.label(), step),
        context,
        tag: cell_tag(run_id, cell),
        target: cell.variant.target.clone(),
        build_args: build_args.clone(),
        labels,
        network_mode: "host".to_string(),
        no_cache,
    };
    let proxy = &ctx.proxy.log;
    let mark = proxy.len();
    ctx.spent.context_ms += ms(preparing.elapsed());
    let started_unix_ms = crate::results::unix_ms_now();
    let started = Instant::now();
    if *ctx.interrupt.borrow() {
        return Err(RunError::Interrupted(ctx.plan.results_path.clone()));
    }
    // Dropping the build's future closes its connection, and the engine cancels the build.
    let timeout = ctx.plan.build_timeout;
    let outcome = tokio::select! {
        r = ctx.engine.build(request, progress) => Some(r),
        _ = ctx.interrupt.changed() => return Err(RunError::Interrupted(ctx.plan.results_path.clone())),
        _ = tokio::time::sleep(timeout) => None,
    };
    let wall_ms = ms(started.elapsed());
    ctx.spent.builds_ms += wall_ms;
    // Over several engines the log holds every lane's requests: this build's are its engine's lane's.
    let requests: Vec<ProxyRequest> = proxy.since(mark).into_iter().filter(|r| r.lane == ctx.proxy.lane).collect();
    let outcome = match outcome {
        Some(Ok(o)) => o,
        None => {
            let mut record = failed(format!("the build had not finished after {} (the build timeout): it was cancelled in the engine", humantime::format_duration(timeout)));
            record.outcome = Outcome::TimedOut;
            record.started_unix_ms = started_unix_ms;
            record.wall_ms = wall_ms;
            record.proxy = proxy_record(&requests);
            return Ok(record);
        }
        Some(Err(e)) => {
            // An engine that no longer answers is told from one that refused the build.
            let unreadable_context = matches!(e, EngineError::Context { .. });
            let lost = !unreadable_context && !ctx.engine.answers().await;
            ctx.engine_lost |= lost;
            let mut record = failed(if lost {
                format!("{ENGINE_LOST}: {e}")
            } else if unreadable_context {
                e.to_string()
            } else {
                format!("the engine failed during the build: {e}")
            });
            record.started_unix_ms = started_unix_ms;
            record.wall_ms = wall_ms;
            record.proxy = proxy_record(&requests);
            return Ok(record);
        }
    };
    let inspecting = Instant::now();
    let inspection = match (&outcome.image, ctx.plan.inspect) {
        (Some(image), true) => tokio::select! {
            i = inspect_cached(ctx.engine, image, &cell.variant, sink, ctx.plan.layer_contents && no_cache) => Some(i),
            _ = ctx.interrupt.changed() => {
                // A probe's container outlives its dropped wait: remove this run's.
                let _ = ctx.engine.remove_labelled(Some(&["run"]), Some(run_id)).await;
                return Err(RunError::Interrupted(ctx.plan.results_path.clone()));
            }
        },
        _ => None,
    };
    ctx.spent.inspection_ms += ms(inspecting.elapsed());
    let mut layers = layer_records(&model, cell.builder, &outcome.steps, started_unix_ms);
    // None when the engine stopped reading the context early: then nothing is explained.
    // A file of the context that can no longer be read leaves this build's misses unexplained, like a cut context.
    let hashing = Instant::now();
    let sent = outcome.context.and_then(|mut sent| sent.fill_digests().ok().map(|()| sent));
    ctx.spent.context_ms += ms(hashing.elapsed());
    let inputs = sent.map(|sent| BuildInputs {
        base_images,
        model: model.clone(),
        build_args: build_args.clone(),
        context: sent.contents,
        no_cache,
    });
    if let Some(inputs) = inputs {
        explain(run.previous.as_ref(), &inputs, &mut layers);
        run.previous = Some(inputs);
    }
    Ok(BuildRecord {
        started_unix_ms,
        wall_ms,
        outcome: if outcome.failure.is_none() { Outcome::Ok } else { Outcome::Failed },
        error_log: outcome.failure.as_ref().map(|f| f.log.clone()).unwrap_or_default(),
        error: outcome.failure.map(|f| unreachable_frontend(&model_text, cell.builder, &f.message).unwrap_or_else(|| format!("at `{}`: {}", f.step, f.message))),
        layers,
        image: outcome.image.map(|i| ImageRecord {
            id: i.id,
            size_bytes: i.size_bytes,
            layer_count: i.layers,
            user: i.user,
        }),
        proxy: proxy_record(&requests),
        notes,
        inspection,
        ..build_record(cell, step, cache_state, build_args)
    })
}

/// Inspects an image, reusing an earlier inspection of the same image id for the same template in this run.
/// What Go's layers hold is read once per template, from a cold build (`read_layers`: the run reads them, and the
/// build was cold), since exporting a large image takes seconds.
pub(super) async fn inspect_cached(engine: &Engine, image: &crate::engine::ImageFacts, variant: &Variant, sink: &Sink<'_, '_>, read_layers: bool) -> Inspection {
    let (earlier, contents_read) = {
        let results = sink.results.borrow();
        let earlier = results
            .records
            .iter()
            .filter(|r| r.variant == variant.name && r.image.as_ref().is_some_and(|i| i.id == image.id))
            .find_map(|r| r.inspection.clone().filter(|i| i.error.is_none()));
        let contents_read = results.records.iter().any(|r| r.variant == variant.name && r.inspection.as_ref().is_some_and(|i| !i.layer_contents.is_empty()));
        (earlier, contents_read)
    };
    match earlier {
        Some(i) => i,
        None => {
            let options = InspectOptions {
                binary: variant.inspect_binary.clone(),
                probe: variant.probe.clone(),
                layer_contents: read_layers && !contents_read,
            };
            inspect_image(engine, image, &options).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frontend_the_engine_cannot_pull_is_named_with_its_directive_line_and_the_way_out() {
        let dockerfile = "# syntax = docker/dockerfile:1.3\nFROM golang:1.23\n";
        let message = "failed to solve with frontend dockerfile.v0: failed to solve with frontend gateway.v0: docker.io/docker/dockerfile:1.3: failed to do request: Head \"https://registry-1.docker.io/v2/docker/dockerfile/manifests/1.3\": dial tcp: lookup registry-1.docker.io: no such host";
        let said = unreachable_frontend(dockerfile, Builder::Buildkit, message).expect("named");
        assert!(said.starts_with("the Dockerfile's `# syntax = docker/dockerfile:1.3` (line 1) names a frontend image the engine cannot pull"), "{said}");
        assert!(said.contains("--frontend builtin") && !said.contains('\n'), "{said}");
        // Not for the legacy builder (which ignores the line), another failure, or a Dockerfile without the line.
        assert_eq!(unreachable_frontend(dockerfile, Builder::Legacy, message), None);
        assert_eq!(unreachable_frontend(dockerfile, Builder::Buildkit, "process \"/bin/sh -c make\" did not complete successfully: exit code: 127"), None);
        assert_eq!(unreachable_frontend("FROM golang:1.23\n", Builder::Buildkit, message), None);
    }
}
