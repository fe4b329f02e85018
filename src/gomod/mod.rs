//! Go's module files: go.mod (requirements, versions), go.sum (hashes, a bump's rewrite) and the versions a bump may choose from; used by the proxy, the workspace and scenarios alike.

pub mod modfile;
pub mod sum;
pub mod versions;

pub use modfile::Version;
pub use versions::{next_version, ModuleVersions, VersionFiles};
