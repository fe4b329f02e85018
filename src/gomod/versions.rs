//! The versions of a module that a dependency bump may choose from (the `ModuleVersions` trait) and the rule behind `version = "next"`.

use std::path::PathBuf;

use crate::gomod::modfile::Version;

/// Where a bump finds the versions of a module and the files of one version.
pub trait ModuleVersions {
    /// Every version of `module` available, oldest first; empty when there is none.
    fn versions(&self, module: &str) -> Vec<Version>;
    /// The `.mod` and `.zip` files of `module@version`, if this source holds both.
    fn files_for(&self, module: &str, version: &str) -> Option<VersionFiles>;
    /// What an error calls this source of versions (`the module store /path`).
    fn describe(&self) -> String;
}

/// The files of one module version a bump reads: its go.mod, and its zip for the go.sum hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFiles {
    pub mod_file: PathBuf,
    pub zip: PathBuf,
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
}
