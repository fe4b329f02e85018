//! The versions of a module that a dependency bump may choose from (the `ModuleVersions` trait, here over a store's `list` files) and the rule behind `version = "next"`.

use crate::goproxy::gomod::Version;
use crate::goproxy::layout::StoreLayout;

/// Where a bump finds the versions of a module and the files of one version.
pub trait ModuleVersions {
    /// Every version of `module` available, oldest first; empty when there is none.
    fn versions(&self, module: &str) -> Vec<Version>;
    /// A GOPROXY-layout folder holding `module@version`'s `.mod` and `.zip`, if any does.
    fn layout_for(&self, module: &str, version: &str) -> Option<StoreLayout>;
    /// What an error calls this source of versions (`the module store /path`).
    fn describe(&self) -> String;
}

impl ModuleVersions for StoreLayout {
    /// The versions the module's `list` file names that parse as module versions.
    fn versions(&self, module: &str) -> Vec<Version> {
        let text = std::fs::read_to_string(self.version_dir(module).join("list")).unwrap_or_default();
        let mut versions: Vec<Version> = text.split_whitespace().filter_map(Version::parse).collect();
        versions.sort();
        versions.dedup();
        versions
    }

    fn layout_for(&self, module: &str, version: &str) -> Option<StoreLayout> {
        let complete = ["mod", "zip"].iter().all(|ext| self.file(module, version, ext).is_file());
        complete.then(|| self.clone())
    }

    fn describe(&self) -> String {
        format!("the module store {}", self.root().display())
    }
}

/// Versions fetched ahead (through an upstream, which needs async I/O) for
/// the bumps of one step, over a store for everything else.
#[derive(Debug, Clone)]
pub struct Prefetched {
    pub store: StoreLayout,
    /// What an error calls the whole source (`the module store X and the upstream Y`).
    pub description: String,
    pub versions: std::collections::BTreeMap<String, Vec<Version>>,
    pub layouts: std::collections::BTreeMap<(String, String), StoreLayout>,
}

impl ModuleVersions for Prefetched {
    fn versions(&self, module: &str) -> Vec<Version> {
        self.versions.get(module).cloned().unwrap_or_else(|| self.store.versions(module))
    }

    fn layout_for(&self, module: &str, version: &str) -> Option<StoreLayout> {
        self.layouts.get(&(module.to_string(), version.to_string())).cloned().or_else(|| self.store.layout_for(module, version))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// The version `version = "next"` picks: the oldest release above `current`.
///
/// Releases only: pre-releases and pseudo-versions are passed over, and so is
/// a `+incompatible` version unless `current` is one itself (as `go get -u`
/// does not move a module onto `+incompatible`). `None` when no release is newer.
pub fn next_version(current: &str, available: &[Version]) -> Option<Version> {
    let current_version = Version::parse(current)?;
    let incompatible_ok = current.ends_with("+incompatible");
    let mut newer: Vec<&Version> = available
        .iter()
        .filter(|v| v.is_release() && (incompatible_ok || !v.as_str().ends_with("+incompatible")))
        .filter(|v| **v > current_version)
        .collect();
    newer.sort();
    newer.first().map(|v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(list: &[&str]) -> Vec<Version> {
        list.iter().map(|v| Version::parse(v).unwrap()).collect()
    }

    #[test]
    fn next_is_the_oldest_newer_release() {
        let available = vs(&["v1.3.2", "v1.2.0", "v1.2.1", "v1.1.0", "v1.3.0"]);
        assert_eq!(next_version("v1.2.0", &available).unwrap().as_str(), "v1.2.1");
        assert_eq!(next_version("v1.2.1", &available).unwrap().as_str(), "v1.3.0");
        // Not a listed version itself: still the oldest release above it.
        assert_eq!(next_version("v1.2.5", &available).unwrap().as_str(), "v1.3.0");
        assert!(next_version("v1.3.2", &available).is_none());
        assert!(next_version("not-a-version", &available).is_none());
    }

    #[test]
    fn pre_releases_pseudo_versions_and_incompatible_majors_are_passed_over() {
        let available = vs(&[
            "v1.2.0",
            "v1.3.0-rc.1",
            "v1.2.1-0.20230101000000-abcdefabcdef",
            "v2.0.0+incompatible",
            "v1.4.0",
        ]);
        assert_eq!(next_version("v1.2.0", &available).unwrap().as_str(), "v1.4.0");
        assert!(next_version("v1.4.0", &available).is_none());
        // A pseudo-version moves to the first release above it.
        let from_pseudo = next_version("v0.0.0-20190716064945-2f068394615f", &vs(&["v0.1.0", "v0.2.0"]));
        assert_eq!(from_pseudo.unwrap().as_str(), "v0.1.0");
        let incompatible = vs(&["v2.0.0+incompatible", "v3.0.0+incompatible"]);
        assert_eq!(next_version("v2.0.0+incompatible", &incompatible).unwrap().as_str(), "v3.0.0+incompatible");
    }

    #[test]
    fn a_store_lists_its_versions_oldest_first_and_knows_which_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreLayout::new(dir.path());
        let vdir = store.version_dir("example.com/Big/mod");
        std::fs::create_dir_all(&vdir).unwrap();
        std::fs::write(vdir.join("list"), "v1.10.0\nv1.2.0\nnonsense\nv1.9.0\n").unwrap();
        for ext in ["mod", "zip"] {
            std::fs::write(store.file("example.com/Big/mod", "v1.9.0", ext), "x").unwrap();
        }
        let listed: Vec<String> = store.versions("example.com/Big/mod").iter().map(|v| v.as_str().to_string()).collect();
        assert_eq!(listed, ["v1.2.0", "v1.9.0", "v1.10.0"]);
        assert!(store.versions("example.com/absent").is_empty());
        assert!(store.layout_for("example.com/Big/mod", "v1.9.0").is_some());
        assert!(store.layout_for("example.com/Big/mod", "v1.10.0").is_none());
        assert!(store.describe().contains(&dir.path().display().to_string()));
    }
}
