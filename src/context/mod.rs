//! The build context: what a `COPY`/`ADD` can see, made as `/usr/bin/docker build` (20.10) makes it for each builder.

mod archive;
mod ignore;

use std::path::PathBuf;

pub use archive::{build_context, BuildContext};
pub use ignore::IgnoreRules;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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
}
