//! Where layerbench keeps what it generates outside the repository (module store, root filesystems, downloaded packages), and which Debian mirror it uses.

use std::path::PathBuf;

/// `$LAYERBENCH_CACHE`, else `$XDG_CACHE_HOME/layerbench`, else `~/.cache/layerbench`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAYERBENCH_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("layerbench");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("layerbench")
}

/// The module store that serves the sample service.
pub fn store_dir() -> PathBuf {
    cache_dir().join("modstore")
}

/// The Debian archive used by debootstrap and `apt-get download`.
pub fn debian_mirror() -> String {
    std::env::var("LAYERBENCH_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_string())
}

/// The bundled sample service (inside the source tree layerbench was built from).
pub fn sample_app_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-go-app")
}
