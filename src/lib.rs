//! layerbench: real Docker builds of Go apps over scripted change scenarios, with per-step cache outcomes and times.

pub mod cli;
pub mod context;
pub mod engine;
pub mod goproxy;
pub mod images;
pub mod paths;
pub mod selftest;
pub mod setup;
