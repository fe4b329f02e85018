//! layerbench: real Docker builds of Go apps over scripted change scenarios, with per-step cache outcomes and times.

pub mod analysis;
pub mod cli;
pub mod context;
pub mod dockerfile;
pub mod durable;
pub mod engine;
pub mod goproxy;
pub mod images;
pub mod inspect;
pub mod miss;
pub mod paths;
pub mod project;
pub mod plot;
pub mod progress;
pub mod report;
pub mod results;
pub mod roles;
pub mod runner;
pub mod scenario;
pub mod selftest;
pub mod setup;
pub mod shipped;
pub mod suite;
pub mod table;
pub mod toml_lines;
pub mod workspace;
