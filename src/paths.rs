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

/// Where the engines layerbench owns keep their data roots, sockets and logs (one folder each, by name).
pub fn engines_dir() -> PathBuf {
    cache_dir().join("engines")
}

/// Where the module proxy keeps the answers of upstream GOPROXYs (one subfolder each).
pub fn upstream_cache_dir() -> PathBuf {
    cache_dir().join("upstream")
}

/// The Debian archive used when `LAYERBENCH_DEBIAN_MIRROR` does not choose one (reports leave it out).
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The Debian archive used by debootstrap and `apt-get download`.
pub fn debian_mirror() -> String {
    std::env::var("LAYERBENCH_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_DEBIAN_MIRROR.to_string())
}

/// The bundled sample service in the source tree (for tests; the binary uses the copy it ships, see `shipped`).
pub fn sample_app_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-go-app")
}

/// Where runs write their results by default: `layerbench-results/` in the current folder.
pub fn results_dir() -> PathBuf {
    PathBuf::from("layerbench-results")
}

/// The scenarios folder of the source tree (for tests; the binary uses the scenarios it ships).
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A run id from the current UTC time and the process: `YYYYMMDD-HHMMSS-PID`, so that two runs started in the same
/// second on one engine still label, tag and clean their own images apart.
pub fn new_run_id() -> String {
    format!("{}-{}", run_id_at(crate::results::unix_ms_now() / 1000), std::process::id())
}

fn run_id_at(secs: u64) -> String {
    let t = rfc3339(secs);
    format!("{}{}{}-{}{}{}", &t[0..4], &t[5..7], &t[8..10], &t[11..13], &t[14..16], &t[17..19])
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
pub fn utc_datetime(secs: u64) -> String {
    let t = rfc3339(secs);
    format!("{} {} UTC", &t[..10], &t[11..19])
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_are_utc_timestamps() {
        assert_eq!(super::run_id_at(0), "19700101-000000");
        assert_eq!(super::run_id_at(1_795_958_218), "20261129-131658");
        assert_eq!(super::utc_datetime(1_795_958_218), "2026-11-29 13:16:58 UTC");
    }
}
