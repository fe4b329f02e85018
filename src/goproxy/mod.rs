//! The Go module side of layerbench: the module store (built from Debian's packages) and the GOPROXY server over it.

pub mod gomod;
pub mod gosum;
pub mod layout;
pub mod server;
pub mod store;
pub mod versions;

pub use layout::{escape_path, unescape_path, StoreLayout};
pub use server::{ProxyConfig, ProxyLog, ProxyRequest, ProxyServer, RequestKind, Shaping, ShapingControl, Unpublished};
pub use store::{build_store, Recipe, StoreReport};
pub use versions::{next_version, ModuleVersions};
