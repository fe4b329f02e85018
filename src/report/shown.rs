//! What a report may say about where things were: files by name (or by their path below the results file), the module store by its recipe, the module proxy only as loopback or not, and the Debian mirror only when the user chose one.

use std::path::{Component, Path};

use crate::results::StoreProvenance;

/// A path recorded in the results as the report shows it: relative paths as they are, an absolute one relative to the results folder when it lies below it, else by its last component (the app's folder name, the Dockerfile's name).
/// `results_dir` is the absolute folder of the results file.
pub fn path(recorded: &str, results_dir: &Path) -> String {
    let p = Path::new(recorded);
    if !p.is_absolute() {
        return recorded.to_string();
    }
    let clean = |p: &Path| p.components().filter(|c| !matches!(c, Component::CurDir)).collect::<std::path::PathBuf>();
    match clean(p).strip_prefix(clean(results_dir)) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => p.file_name().map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned()),
    }
}

/// The module store by what it is made from: its recipe fingerprint.
pub fn store(store: &StoreProvenance) -> String {
    if store.recipe_fingerprint.is_empty() {
        "a prepared store (no recipe recorded)".to_string()
    } else {
        format!("recipe `{}`", store.recipe_fingerprint)
    }
}

/// The Debian mirror the store was built from, only when it is not the built-in default (`None` for the default or when not recorded).
pub fn chosen_mirror(store: &StoreProvenance) -> Option<&str> {
    let m = store.mirror.trim_end_matches('/');
    (!m.is_empty() && m != crate::paths::DEFAULT_DEBIAN_MIRROR.trim_end_matches('/')).then_some(store.mirror.as_str())
}

/// Where the module proxy listened, without its address: `loopback` or `not loopback`.
pub fn proxy(url: &str) -> &'static str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        "loopback"
    } else {
        "not loopback"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_shown_by_name_unless_it_lies_below_the_results() {
        let results = Path::new("/home/me/runs/r1");
        assert_eq!(path("/work/main/sample-go-app", results), "sample-go-app");
        assert_eq!(path("/home/me/runs/r1/app", results), "app");
        assert_eq!(path("/home/me/runs/r1/./apps/svc", results), "apps/svc");
        assert_eq!(path("/home/me/runs/r1", results), ".");
        assert_eq!(path("/home/me/runs/r10/app", results), "app", "a sibling folder is not below");
        assert_eq!(path("deploy/Dockerfile", results), "deploy/Dockerfile");
        assert_eq!(path("sample", results), "sample");
    }

    #[test]
    fn the_store_is_named_by_its_recipe_and_the_default_mirror_is_not_shown() {
        let mut s = StoreProvenance { path: "/root/.cache/layerbench/modstore".into(), recipe_fingerprint: "d4933a959f43976a".into(), mirror: crate::paths::DEFAULT_DEBIAN_MIRROR.into(), modules: 1, versions: 1 };
        assert_eq!(store(&s), "recipe `d4933a959f43976a`");
        assert_eq!(chosen_mirror(&s), None);
        s.mirror = "http://deb.debian.org/debian/".into();
        assert_eq!(chosen_mirror(&s), None);
        s.mirror = String::new();
        assert_eq!(chosen_mirror(&s), None);
        s.mirror = "http://mirror.example/debian".into();
        assert_eq!(chosen_mirror(&s), Some("http://mirror.example/debian"));
        s.recipe_fingerprint.clear();
        assert!(!store(&s).contains('/'));
    }

    #[test]
    fn the_proxy_is_shown_only_as_loopback_or_not() {
        assert_eq!(proxy("http://127.0.0.1:48123"), "loopback");
        assert_eq!(proxy("http://localhost:1/x"), "loopback");
        assert_eq!(proxy("http://[::1]:8080"), "loopback");
        assert_eq!(proxy("http://10.0.0.2:48123"), "not loopback");
        assert_eq!(proxy("http://proxy.example"), "not loopback");
    }
}
