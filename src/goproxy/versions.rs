//! The module store and fetched-ahead versions as sources of versions for a dependency bump.

use crate::gomod::{ModuleVersions, Version, VersionFiles};
use crate::goproxy::layout::StoreLayout;

impl ModuleVersions for StoreLayout {
    /// The versions the module's `list` file names that parse as module versions.
    fn versions(&self, module: &str) -> Vec<Version> {
        let text = std::fs::read_to_string(self.version_dir(module).join("list")).unwrap_or_default();
        let mut versions: Vec<Version> = text.split_whitespace().filter_map(Version::parse).collect();
        versions.sort();
        versions.dedup();
        versions
    }

    fn files_for(&self, module: &str, version: &str) -> Option<VersionFiles> {
        let files = VersionFiles { mod_file: self.file(module, version, "mod"), zip: self.file(module, version, "zip") };
        (files.mod_file.is_file() && files.zip.is_file()).then_some(files)
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

    fn files_for(&self, module: &str, version: &str) -> Option<VersionFiles> {
        let fetched = self.layouts.get(&(module.to_string(), version.to_string()));
        fetched.and_then(|layout| layout.files_for(module, version)).or_else(|| self.store.files_for(module, version))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(store.files_for("example.com/Big/mod", "v1.9.0").is_some());
        assert!(store.files_for("example.com/Big/mod", "v1.10.0").is_none());
        assert!(store.describe().contains(&dir.path().display().to_string()));
    }
}
