//! What can stop a run, and the small vocabulary its parts share.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::EngineError;
use crate::results::ResultsError;
use crate::workspace::WorkspaceError;

/// Label carrying the run id on every image a run builds.
pub use crate::engine::RUN_LABEL;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no variant named `{name}`: {dir} has {available}")]
    UnknownVariant { name: String, dir: PathBuf, available: String },
    #[error("failed to list the variants in {dir}: {source} (give templates with --dockerfile PATH)")]
    Variants { dir: PathBuf, source: std::io::Error },
    #[error("{0}")]
    BadTemplate(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("failed to prepare the scratch workspace for {cell}: {source}")]
    Workspace { cell: String, source: Box<WorkspaceError> },
    #[error("interrupted; the partial results (every build finished so far) are in {0}; `layerbench report` on that file reports them, and `layerbench run` with the same options and `--resume {0}` runs the cells it lacks")]
    Interrupted(PathBuf),
    #[error("the Docker engine stopped answering and was not back after {}; every build finished before is in {path}; once the engine runs again, `layerbench run` with the same options and `--resume {path}` runs only the cells that file lacks", humantime::format_duration(*waited))]
    EngineLost { path: PathBuf, waited: Duration },
    #[error("{path} cannot be resumed by this run: {problem}")]
    NotResumable { path: PathBuf, problem: String },
    #[error("{0}")]
    Matrix(String),
}

/// How a build's error begins when the engine stopped answering during it.
pub const ENGINE_LOST: &str = "engine connection lost";

/// Milliseconds, to the microsecond.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

