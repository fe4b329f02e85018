//! Build streams recorded from real builds of the fixture app (both builders, success, failure, all cached) are read into the right step records.

use std::path::Path;

use layerbench::dockerfile::DockerfileModel;
use layerbench::engine::stream::BuildStream;
use layerbench::engine::Builder;
use layerbench::results::LayerRecord;
use layerbench::run::layer_records;

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn read(builder: Builder, name: &str) -> (Vec<LayerRecord>, Option<layerbench::engine::BuildFailure>) {
    let prefix = match builder {
        Builder::Buildkit => "buildkit",
        Builder::Legacy => "legacy",
    };
    let path = fixture().join(format!("streams/{prefix}-{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let stream = BuildStream::from_recording(&text, &path).unwrap();
    let failure = stream.failure().cloned();
    let model = DockerfileModel::parse(&std::fs::read_to_string(fixture().join("tiny-app/dockerfiles/layered.Dockerfile")).unwrap());
    let steps = stream.finish();
    let start = steps.iter().filter_map(|s| s.started_unix_ms).min().unwrap_or(0);
    (layer_records(&model, builder, &steps, start), failure)
}

fn find<'a>(layers: &'a [LayerRecord], instruction: &str) -> &'a LayerRecord {
    layers
        .iter()
        .find(|l| l.instruction == instruction)
        .unwrap_or_else(|| panic!("no step `{instruction}` in {layers:#?}"))
}

const DOWNLOAD: &str = "RUN go mod download";
const BUILD: &str = "RUN CGO_ENABLED=0 go build -o /out/tiny .";

#[test]
fn a_cold_buildkit_build_reports_every_step_executed_in_dockerfile_order() {
    let (layers, failure) = read(Builder::Buildkit, "cold-success");
    assert!(failure.is_none());
    let names: Vec<&str> = layers.iter().map(|l| l.instruction.as_str()).collect();
    assert_eq!(
        names,
        [
            "FROM golang:1.23 AS build",
            "WORKDIR /src",
            "COPY go.mod go.sum ./",
            DOWNLOAD,
            "COPY . .",
            BUILD,
            "COPY --from=build /out/tiny /tiny"
        ]
    );
    assert!(!find(&layers, DOWNLOAD).cached && !find(&layers, BUILD).cached);
    assert!(find(&layers, BUILD).duration_ms > 1000.0, "a cold go build takes seconds");
    assert_eq!(find(&layers, "COPY --from=build /out/tiny /tiny").stage, "stage-1");
}

#[test]
fn a_failed_buildkit_build_records_the_failing_step_and_its_error() {
    let (layers, failure) = read(Builder::Buildkit, "failed");
    let failure = failure.expect("the build failed");
    assert_eq!(failure.step, format!("[build 6/6] {BUILD}"));
    assert!(failure.message.contains("exit code: 1"), "{}", failure.message);
    assert!(find(&layers, BUILD).error.is_some());
    assert!(find(&layers, DOWNLOAD).cached, "the download step before the failure came from the cache");
}

#[test]
fn a_cached_buildkit_rebuild_reports_every_step_cached() {
    let (layers, _) = read(Builder::Buildkit, "touch-all-cached");
    assert!(layers.iter().filter(|l| !l.instruction.starts_with("FROM")).all(|l| l.cached), "{layers:#?}");
}

#[test]
fn a_cold_legacy_build_maps_step_numbers_onto_the_dockerfile_and_drops_label_steps() {
    let (layers, failure) = read(Builder::Legacy, "cold-success");
    assert!(failure.is_none());
    assert_eq!(layers.len(), 12, "the Dockerfile's 12 instructions, without the harness's LABEL steps: {layers:#?}");
    assert!(layers.iter().all(|l| !l.cached));
    assert_eq!(find(&layers, "USER 65532:65532").stage, "stage-1");
    assert!(find(&layers, BUILD).duration_ms > 1000.0);
}

#[test]
fn a_failed_legacy_build_records_the_failing_step_and_its_error() {
    let (layers, failure) = read(Builder::Legacy, "failed");
    let failure = failure.expect("the build failed");
    assert!(failure.step.ends_with(BUILD), "{}", failure.step);
    assert!(failure.message.contains("returned a non-zero code"), "{}", failure.message);
    assert!(find(&layers, BUILD).error.is_some());
    assert!(find(&layers, DOWNLOAD).cached);
}

#[test]
fn a_cached_legacy_rebuild_reports_every_step_cached() {
    let (layers, _) = read(Builder::Legacy, "touch-all-cached");
    let run_steps: Vec<_> = layers.iter().filter(|l| l.instruction.starts_with("RUN") || l.instruction.starts_with("COPY")).collect();
    assert_eq!(run_steps.len(), 5);
    assert!(run_steps.iter().all(|l| l.cached), "{run_steps:#?}");
}
