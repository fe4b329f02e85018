//! The tests that need no engine (the module store is built from Debian packages), in one binary so that CI links it
//! once. One module at a time: `cargo test --release --test offline fuzz::`.

#[path = "../common/mod.rs"]
mod common;

mod calibration;
mod check_cli;
mod fuzz;
mod junit_schema;
mod proxy;
mod report;
mod scenarios;
mod store;
mod streams;
