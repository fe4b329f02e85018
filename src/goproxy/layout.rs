//! The GOPROXY directory layout: escaped module paths, and checking that a directory really is such a store.

use std::path::{Path, PathBuf};

use crate::gomod::modfile::Version;

/// Errors about a directory that should be a GOPROXY-layout module store.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("module store {0} does not exist; run `layerbench setup` to build it or pass an existing GOPROXY-layout directory")]
    Missing(PathBuf),
    #[error("{0} is not a GOPROXY-layout module store: no `<module>/@v/list` file was found under it; run `layerbench setup` to build one")]
    NotAStore(PathBuf),
    #[error("module store {store}: {list} names version {version} but {missing} is missing")]
    Incomplete {
        store: PathBuf,
        list: PathBuf,
        version: String,
        missing: PathBuf,
    },
    #[error("module store {store}: {list} holds `{line}`, which is not a module version")]
    BadVersion {
        store: PathBuf,
        list: PathBuf,
        line: String,
    },
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Escapes a module path or version for use on disk and in proxy URLs:
/// every capital letter becomes `!` followed by its lower-case form.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_path`]; `None` when the text is not a valid escaped path
/// (a capital letter, or a `!` not followed by a lower-case letter).
pub fn unescape_path(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    if bang {
        None
    } else {
        Some(out)
    }
}

/// A directory in GOPROXY layout: `<escaped module>/@v/{list, <v>.info, <v>.mod, <v>.zip}`.
#[derive(Debug, Clone)]
pub struct StoreLayout {
    root: PathBuf,
}

/// One module of a store with the versions its `list` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModule {
    pub path: String,
    pub versions: Vec<String>,
}

impl StoreLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `@v` folder of a module.
    pub fn version_dir(&self, module: &str) -> PathBuf {
        self.root.join(escape_path(module)).join("@v")
    }

    /// The path of one file of a module version; `ext` is `info`, `mod` or `zip`.
    pub fn file(&self, module: &str, version: &str, ext: &str) -> PathBuf {
        self.version_dir(module)
            .join(format!("{}.{ext}", escape_path(version)))
    }

    /// Every module in the store, sorted by path, after checking that each
    /// version its list names has its `.info`, `.mod` and `.zip`.
    pub fn validate(&self) -> Result<Vec<StoredModule>, LayoutError> {
        if !self.root.is_dir() {
            return Err(LayoutError::Missing(self.root.clone()));
        }
        let mut lists = Vec::new();
        find_lists(&self.root, &mut lists)?;
        if lists.is_empty() {
            return Err(LayoutError::NotAStore(self.root.clone()));
        }
        let mut modules = Vec::new();
        for list in lists {
            let vdir = list.parent().unwrap_or(&self.root);
            let module_dir = vdir.parent().unwrap_or(&self.root);
            let rel = module_dir
                .strip_prefix(&self.root)
                .map_err(|_| LayoutError::NotAStore(self.root.clone()))?;
            let escaped = rel.to_string_lossy().replace('\\', "/");
            let path = unescape_path(&escaped).ok_or_else(|| LayoutError::NotAStore(self.root.clone()))?;
            let text = std::fs::read_to_string(&list).map_err(|source| LayoutError::Io {
                path: list.clone(),
                source,
            })?;
            let mut versions = Vec::new();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if Version::parse(line).is_none() {
                    return Err(LayoutError::BadVersion {
                        store: self.root.clone(),
                        list: list.clone(),
                        line: line.to_string(),
                    });
                }
                for ext in ["info", "mod", "zip"] {
                    let f = vdir.join(format!("{}.{ext}", escape_path(line)));
                    if !f.is_file() {
                        return Err(LayoutError::Incomplete {
                            store: self.root.clone(),
                            list: list.clone(),
                            version: line.to_string(),
                            missing: f,
                        });
                    }
                }
                versions.push(line.to_string());
            }
            modules.push(StoredModule { path, versions });
        }
        modules.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(modules)
    }
}

fn find_lists(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LayoutError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LayoutError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LayoutError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "@v") {
                let list = path.join("list");
                if list.is_file() {
                    out.push(list);
                }
            } else {
                find_lists(&path, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capitals_are_escaped_with_a_bang() {
        assert_eq!(escape_path("github.com/BurntSushi/toml"), "github.com/!burnt!sushi/toml");
        assert_eq!(unescape_path("github.com/!burnt!sushi/toml").as_deref(), Some("github.com/BurntSushi/toml"));
    }

    #[test]
    fn invalid_escapes_are_refused() {
        assert_eq!(unescape_path("github.com/Burnt"), None);
        assert_eq!(unescape_path("github.com/!"), None);
        assert_eq!(unescape_path("a/!1"), None);
    }

    #[test]
    fn a_directory_without_lists_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("some/thing")).unwrap();
        let err = StoreLayout::new(dir.path()).validate().unwrap_err();
        assert!(matches!(err, LayoutError::NotAStore(_)), "{err}");
        assert!(err.to_string().contains("not a GOPROXY-layout module store"));
    }

    #[test]
    fn a_listed_version_without_its_zip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("example.com/!a/@v");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("list"), "v1.0.0\n").unwrap();
        std::fs::write(v.join("v1.0.0.info"), "{}").unwrap();
        std::fs::write(v.join("v1.0.0.mod"), "module example.com/A\n").unwrap();
        let err = StoreLayout::new(dir.path()).validate().unwrap_err();
        assert!(err.to_string().contains("v1.0.0.zip"), "{err}");
        std::fs::write(v.join("v1.0.0.zip"), "").unwrap();
        let modules = StoreLayout::new(dir.path()).validate().unwrap();
        assert_eq!(modules, vec![StoredModule { path: "example.com/A".into(), versions: vec!["v1.0.0".into()] }]);
    }
}
