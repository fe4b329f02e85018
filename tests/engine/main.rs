//! The tests that drive the real engine, in one binary so that CI links it once. They run one at a time
//! (`--test-threads=1`, and `common::engine_lock` within a module): two cores, one daemon. Each module provisions
//! what it needs (base images, the module store, the owned Docker 26.1 engine `lbt-modern`).
//!
//! One module at a time: `cargo test --release --test engine -- --test-threads=1 run::`.

#[path = "../common/mod.rs"]
mod common;

mod any_app;
mod check;
mod cleanup;
mod context_parity;
mod context_stream;
mod faults;
mod images;
mod inspect;
mod layout_changes;
mod matrix;
mod miss_reasons;
mod owned_engine;
mod run;
mod scale;
mod selftest;
mod upstream;
