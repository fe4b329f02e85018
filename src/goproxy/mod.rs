//! The Go module side of layerbench: the module store (built from Debian's packages), the GOPROXY server over it, and the upstream GOPROXY behind it.

mod body;
pub mod client;
pub mod content;
pub mod layout;
pub mod log;
pub mod request;
pub mod server;
pub mod source;
pub mod store;
pub mod upstream;
pub mod versions;

pub use content::Content;
pub use layout::{escape_path, unescape_path, StoreLayout};
pub use request::{Refusal, Target};
pub use server::{ProxyConfig, ProxyLog, ProxyRequest, ProxyServer, RequestKind, Shaping, ShapingControl, Unpublished};
pub use source::{Lookup, ModuleSource, ServedFrom, SourceError, VersionFile};
pub use upstream::{upstream_from_env, Upstream};
pub use store::{build_store, Recipe, StoreReport};
pub use versions::Prefetched;
