//! The layout change kinds (mkdir, write, rename, symlink, chown) against the real engine, step by step, with both builders.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use layerbench::engine::{Builder, Engine};

const PROXY_PORT: u16 = 48151;

/// What `/usr/bin/docker build` (Engine 20.10) gives for the same changes to
/// a folder sent with `COPY . /ctx`, with either builder: a new empty
/// folder, a new file, a rename and a new symlink miss the copy; an owner
/// change does not, as `COPY` without `--chown` gives every file to root.
/// Built from the tiny app's no-compile template: what is checked is the
/// `COPY . .` and the download before it, not what Go compiles from the copy.
#[tokio::test]
async fn layout_changes_miss_the_source_copy_and_an_owner_change_keeps_it_cached() {
    let _guard = common::engine_lock();
    let builders = [Builder::Buildkit, Builder::Legacy];
    let results = common::run_cells(&common::tiny_app(), &[common::NO_COMPILE], vec![common::shipped("layout-changes")], &builders, PROXY_PORT).await;
    let engine = Engine::connect().await.unwrap();
    for cell in 1..=builders.len() {
        engine.remove_image(&format!("layerbench/{}:{}-{cell}", common::NO_COMPILE, results.run_id)).await.unwrap();
    }
    for builder in builders {
        for (step, copy_cached) in [("empty-folder", false), ("new-file", false), ("rename", false), ("symlink", false), ("chown", true)] {
            let record = results
                .records
                .iter()
                .find(|r| r.builder == builder && r.step == step)
                .unwrap_or_else(|| panic!("{builder:?}: no record of step {step}"));
            assert_eq!(record.outcome, layerbench::results::Outcome::Ok, "{builder:?} {step}: {:?}", record.error);
            let copy = record.layers.iter().find(|l| l.instruction.starts_with("COPY . .")).expect("a `COPY . .` step");
            assert_eq!(copy.cached, copy_cached, "{builder:?} {step}: `COPY . .` cached");
            let download = record.layers.iter().find(|l| l.instruction.starts_with("RUN go mod download")).expect("a download step");
            assert!(download.cached, "{builder:?} {step}: no module file changed, yet the download ran");
        }
    }
}
