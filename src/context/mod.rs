//! The build context: what a `COPY`/`ADD` can see, made as `docker build` makes it for each builder, with the `.dockerignore` rules of the engine's release (20.10, or 23 and later).

mod archive;
mod files;
mod ignore;
mod stream;
mod sync;

use std::path::PathBuf;

pub use archive::{build_context, BuildContext, SentContext};
pub use files::{ContextFiles, FileState};
pub use ignore::{IgnoreDialect, IgnoreRules, WalkJudgement};
pub use stream::{stream_context, ContextStream, WalkEnd};
pub use sync::{list as list_for_sync, session_context, DigestCache, FileSyncService, ListedPath, SessionContext, SyncCall, SyncLog, SyncRequest, SyncedDir};

/// How a BuildKit build's context reaches the engine: recorded in results, so defined there.
pub use crate::results::ContextTransfer;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while the build context was sent: {what}")]
    Changed { path: PathBuf, what: String },
    #[error("{file}: {at}: the pattern `{pattern}` is not valid in a .dockerignore file: {reason}")]
    BadPattern {
        file: PathBuf,
        /// `line N`, or the rule that added it.
        at: String,
        pattern: String,
        reason: String,
    },
    #[error("the build context {0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("the Dockerfile {0} does not exist")]
    MissingDockerfile(PathBuf),
    #[error("the engine stopped reading the build context of {0} before its end")]
    NotRead(PathBuf),
    #[error("failed to start walking the build context {path}: {source}")]
    Walker {
        path: PathBuf,
        source: std::io::Error,
    },
}
