//! Judging a project's expectations against finished results: pass, fail or inconclusive, with the measured values and why a step missed (a pure function; nothing here talks to Docker).

use serde::Serialize;

/// How an expectation came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The measurements cannot settle it (a time expectation inside the noise, too few repetitions).
    Inconclusive,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// One expectation judged over the builds it covers (one template × scenario step × builder).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub template: String,
    /// The scenario, or `None` for an expectation that holds after every build.
    pub scenario: Option<String>,
    /// The scenario step, or `None` for every step the expectation covers.
    pub step: Option<String>,
    pub builder: Option<crate::results::Builder>,
    /// The expectation as written in the project file: `cached = "RUN go mod download"`, `max_image_size = "30MB"`.
    pub expectation: String,
    /// What was expected, in words: `cached in every build`, `at most 30.0 MB`.
    pub expected: String,
    /// What was measured: `executed in 3 of 3 builds`, `31.2 MB`.
    pub measured: String,
    pub outcome: Outcome,
    /// Why it failed or is inconclusive: why the step missed, the build's error, the n and spread that would settle a time.
    pub reason: Option<String>,
    /// The template's Dockerfile (as the project file names it) and the line the expectation points at, for annotations.
    pub dockerfile: String,
    pub line: Option<usize>,
}
