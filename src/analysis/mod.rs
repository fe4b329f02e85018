//! Analysis: pure functions over finished results (statistics and claim verdicts); nothing here talks to Docker.

pub mod compare;
pub mod expect;
pub mod stats;
pub mod verdicts;
