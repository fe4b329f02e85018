//! How a build becomes a record: the results file's header, one build record constructor, layers mapped onto the Dockerfile, proxy requests.

use std::collections::BTreeMap;
use std::path::Path;


use crate::dockerfile::{split_buildkit_name, split_legacy_step, DockerfileModel};
use crate::engine::{Builder, StepReport};
use crate::goproxy::server::{ProxyRequest, RequestKind};
use crate::goproxy::store::StoreReport;
use crate::results::{
    BuildRecord, BuildStart, CacheState, Isolation, LayerRecord, Outcome, ProxyRecord, Results, RunOptions,
    ServedRequest, StoreProvenance, TemplateRecord, SCHEMA_VERSION,
};
use crate::setup::Provisioned;

use super::*;

/// A results file for `plan`, with the provenance of this machine and run, and no records yet.
/// `all_cells` are the run's every cell (those of other shards too): the options name them all.
pub fn new_results(run_id: &str, provisioned: &Provisioned, store: &Path, plan: &Plan, all_cells: &[Cell]) -> Results {
    let repetitions = all_cells.iter().map(|c| c.repetition).max().unwrap_or(1);
    let report = StoreReport::read(store);
    let unique = |names: Vec<String>| {
        let mut seen = Vec::new();
        for n in names {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen
    };
    Results {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: crate::shipped::git_commit(),
        started_unix_ms: crate::results::unix_ms_now(),
        engine: provisioned.engine.clone(),
        machine: Some(provisioned.machine.clone()),
        base_images: provisioned.base_images.clone(),
        store: StoreProvenance {
            path: store.display().to_string(),
            recipe_fingerprint: report.as_ref().map(|r| r.recipe_fingerprint.clone()).unwrap_or_default(),
            mirror: report.as_ref().map(|r| r.mirror.clone()).unwrap_or_default(),
            modules: provisioned.store.modules,
            versions: provisioned.store.versions,
        },
        app: plan.app.display().to_string(),
        options: RunOptions {
            variants: unique(all_cells.iter().map(|c| c.variant.name.clone()).collect()),
            scenarios: unique(all_cells.iter().map(|c| c.scenario.name.clone()).collect()),
            repetitions,
            builders: {
                let mut b: Vec<Builder> = Vec::new();
                for c in all_cells {
                    if !b.contains(&c.builder) {
                        b.push(c.builder);
                    }
                }
                b
            },
            cache_state: plan.cache_state,
            proxy_url: plan.proxy_url.clone(),
            suite: None,
            context_transfer: Some(plan.context_transfer),
            frontend: plan.frontend,
            templates: {
                let mut t: Vec<TemplateRecord> = Vec::new();
                for c in all_cells {
                    if !t.iter().any(|x| x.name == c.variant.name) {
                        t.push(c.variant.record(&plan.app));
                    }
                }
                t
            },
            context: plan.context.strip_prefix(&plan.app).map_or_else(|_| plan.context.display().to_string(), |p| p.display().to_string()),
            upstream: None,
            matrix: matches!(plan.spread, Spread::Matrix { .. }),
        },
        complete: false,
        engines: Vec::new(),
        shard: None,
        overhead: None,
        records: Vec::new(),
    }
}

/// The one way a build record is made: `cell`'s build at `step`, started now, with the cell's facts filled in and nothing
/// measured yet (outcome ok, no error, no layers, no image). The engine fields are set when the record is stored.
pub(super) fn build_record(cell: &Cell, step: &str, cache_state: CacheState, build_args: &BTreeMap<String, String>) -> BuildRecord {
    BuildRecord {
        variant: cell.variant.name.clone(),
        scenario: cell.scenario.name.clone(),
        step: step.to_string(),
        repetition: cell.repetition,
        builder: cell.builder,
        cache_state: BuildStart::of(step, cache_state),
        started_unix_ms: crate::results::unix_ms_now(),
        wall_ms: 0.0,
        outcome: Outcome::Ok,
        error: None,
        layers: Vec::new(),
        image: None,
        proxy: ProxyRecord::default(),
        build_args: build_args.clone(),
        notes: Vec::new(),
        network: cell.network.name.clone(),
        inspection: None,
        cell: Some(cell.index),
        engine: String::new(),
        isolation: Isolation::Shared,
        engine_version: None,
        error_log: Vec::new(),
    }
}

/// A record of a build that failed before or outside the engine's build, saying why.
pub(super) fn failed_record(cell: &Cell, step: &str, cache_state: CacheState, build_args: &BTreeMap<String, String>, error: String) -> BuildRecord {
    BuildRecord { outcome: Outcome::Failed, error: Some(error), ..build_record(cell, step, cache_state, build_args) }
}

/// Maps the builder's step reports onto the Dockerfile's instructions, in file order.
pub fn layer_records(model: &DockerfileModel, builder: Builder, steps: &[StepReport], build_start_unix_ms: u64) -> Vec<LayerRecord> {
    let mut rows: Vec<(usize, LayerRecord)> = Vec::new();
    for (n, s) in steps.iter().enumerate() {
        let mapped = match builder {
            Builder::Buildkit => split_buildkit_name(&s.name).and_then(|(stage, i, text)| model.buildkit_step(&stage, i).map(|ins| (ins, text))),
            Builder::Legacy => split_legacy_step(&s.name).and_then(|(i, text)| model.legacy_step(i).map(|ins| (ins, text))),
        }
        // A step maps onto an instruction of the same keyword only: the legacy builder
        // numbers the build's labels after the last step it builds (with --target,
        // not the file's last), so its step N may lie beyond the target stage.
        .filter(|(ins, text)| text.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(&ins.keyword)) && !text.starts_with("LABEL io.layerbench."))
        .map(|(ins, _)| ins);
        let (stage, instruction, line, position) = match mapped {
            // A global ARG (before the first FROM): the legacy builder reports it as a step that never hits the cache; BuildKit does not report it. No cacheable step.
            Some(ins) if ins.stage.is_empty() => continue,
            Some(ins) => (ins.stage.clone(), ins.text.clone(), Some(ins.line), model.position(ins).unwrap_or(usize::MAX)),
            // The legacy builder turns the build's labels into extra steps at the end: not Dockerfile steps.
            None if s.name.contains(" : LABEL io.layerbench.") => continue,
            // The base image of a one-stage Dockerfile, as BuildKit names it (`[1/5] FROM docker.io/...`): kept, unmapped.
            None => (String::new(), s.name.clone(), None, usize::MAX - steps.len() + n),
        };
        let rel = |t: Option<u64>| t.map(|t| t as f64 - build_start_unix_ms as f64);
        let duration_ms = match (s.started_unix_ms, s.completed_unix_ms) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64,
            _ => 0.0,
        };
        rows.push((
            position,
            LayerRecord {
                stage,
                instruction,
                line,
                vertex: s.name.clone(),
                cached: s.cached,
                duration_ms,
                start_ms: rel(s.started_unix_ms),
                end_ms: rel(s.completed_unix_ms),
                error: s.error.clone(),
                miss_reason: None,
            },
        ));
    }
    rows.sort_by_key(|(p, _)| *p);
    rows.into_iter().map(|(_, r)| r).collect()
}

pub(super) fn proxy_record(requests: &[ProxyRequest]) -> ProxyRecord {
    let mut modules: Vec<String> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Zip && r.status == 200)
        .filter_map(|r| Some(format!("{}@{}", r.module.as_ref()?, r.version.as_ref()?)))
        .collect();
    modules.sort();
    ProxyRecord {
        requests: requests.len(),
        bytes: requests.iter().map(|r| r.bytes).sum(),
        misses: requests.iter().filter(|r| r.is_miss()).count(),
        modules,
        log: requests
            .iter()
            .map(|r| ServedRequest {
                path: r.path.clone(),
                module: r.module.clone(),
                version: r.version.clone(),
                kind: serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                status: r.status,
                bytes: r.bytes,
                served_from: r.served_from.as_str().to_string(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, cached: bool, a: u64, b: u64) -> StepReport {
        StepReport { name: name.into(), cached, started_unix_ms: Some(a), completed_unix_ms: Some(b), error: None }
    }

    const DOCKERFILE: &str = "FROM golang:1.23 AS build\nARG GOPROXY\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /out/app .\nFROM scratch\nCOPY --from=build /out/app /app\nUSER 1\n";

    #[test]
    fn buildkit_reports_are_put_in_dockerfile_order_with_stages() {
        let model = DockerfileModel::parse(DOCKERFILE);
        let steps = vec![
            report("[build 4/5] RUN go mod download", true, 1010, 1010),
            report("[stage-1 1/1] COPY --from=build /out/app /app", false, 1500, 1510),
            report("[build 1/5] FROM docker.io/library/golang:1.23", false, 1000, 1000),
            report("[build 5/5] COPY . .", false, 1020, 1030),
        ];
        let rows = layer_records(&model, Builder::Buildkit, &steps, 1000);
        let names: Vec<&str> = rows.iter().map(|r| r.instruction.as_str()).collect();
        assert_eq!(names, ["FROM golang:1.23 AS build", "RUN go mod download", "COPY . .", "COPY --from=build /out/app /app"]);
        assert_eq!(rows[3].stage, "stage-1");
        assert_eq!(rows[2].duration_ms, 10.0);
        assert_eq!(rows[2].start_ms, Some(20.0));
    }

    #[test]
    fn legacy_label_steps_after_a_target_stage_are_not_mapped_onto_later_stages() {
        let model = DockerfileModel::parse("FROM x AS build\nRUN a\nFROM scratch AS final\nCOPY --from=build /a /a\nFROM x AS debug\nRUN b\n");
        let steps = vec![
            report("Step 4/7 : COPY --from=build /a /a", false, 1, 2),
            report("Step 5/7 : LABEL io.layerbench.kind=build", false, 2, 3),
            report("Step 6/7 : LABEL io.layerbench.managed=true", false, 3, 4),
        ];
        let rows = layer_records(&model, Builder::Legacy, &steps, 0);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].line, rows[0].vertex.as_str()), (Some(4), "Step 4/7 : COPY --from=build /a /a"));
    }

    #[test]
    fn a_global_arg_is_no_step_for_either_builder() {
        let model = DockerfileModel::parse("ARG BASE=x\nFROM ${BASE} AS build\nRUN a\n");
        let legacy = vec![report("Step 1/3 : ARG BASE=x", false, 1, 2), report("Step 2/3 : FROM ${BASE} AS build", false, 2, 3), report("Step 3/3 : RUN a", true, 3, 4)];
        let rows = layer_records(&model, Builder::Legacy, &legacy, 0);
        assert_eq!(rows.iter().map(|r| r.instruction.as_str()).collect::<Vec<_>>(), ["FROM ${BASE} AS build", "RUN a"]);
    }

    #[test]
    fn legacy_reports_map_by_global_step_number() {
        let model = DockerfileModel::parse(DOCKERFILE);
        let steps = vec![report("Step 5/10 : RUN go mod download", true, 5, 6), report("Step 2/10 : ARG GOPROXY", false, 1, 2)];
        let rows = layer_records(&model, Builder::Legacy, &steps, 0);
        assert_eq!(rows[0].instruction, "ARG GOPROXY");
        assert_eq!(rows[0].stage, "build");
        assert!(rows[1].cached);
    }

}
