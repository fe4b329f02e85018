//! go.sum hashes (the `h1:` directory hash) of store contents, and the go.mod/go.sum rewrite of a dependency bump.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::gomod::modfile::{self, Version};
use crate::gomod::versions::ModuleVersions;

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error("{go_mod} does not require {module}; a bump can only change a module it requires")]
    NotRequired { go_mod: PathBuf, module: String },
    #[error("{source_name} has no {module}@{version} (it has: {available})")]
    NotInStore {
        source_name: String,
        module: String,
        version: String,
        available: String,
    },
    #[error("{source_name} has no release of {module} newer than {current}, the version {go_mod} requires (it has: {available})")]
    NoNewerVersion {
        source_name: String,
        go_mod: PathBuf,
        module: String,
        current: String,
        available: String,
    },
    #[error("{module}@{version} requires {needs}, newer than what {go_mod} selects ({has}); bumping it would change other requirements, which a bump change does not do")]
    WouldChangeOthers {
        go_mod: PathBuf,
        module: String,
        version: String,
        needs: String,
        has: String,
    },
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read the module zip {path}: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
}

/// Go's `dirhash.Hash1` over (name, content) pairs.
pub fn hash1(mut files: Vec<(String, Vec<u8>)>) -> String {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = String::new();
    for (name, content) in &files {
        summary.push_str(&format!("{}  {}\n", hex::encode(Sha256::digest(content)), name));
    }
    format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes())))
}

/// The go.sum hash of a module zip (the names are the zip's entry names).
pub fn hash_zip(path: &Path) -> Result<String, BumpError> {
    let zip_err = |source| BumpError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| BumpError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|source| BumpError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        files.push((entry.name().to_string(), content));
    }
    Ok(hash1(files))
}

/// The go.sum hash of a `.mod` file.
pub fn hash_mod(content: &[u8]) -> String {
    hash1(vec![("go.mod".to_string(), content.to_vec())])
}

/// go.mod and go.sum after a bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bumped {
    pub go_mod: String,
    pub go_sum: String,
    pub from_version: String,
}

/// Points `module` at `version` in go.mod and puts the hashes of that
/// version's files (wherever `versions` holds them) into go.sum (the old
/// version's zip hash goes; its go.mod hash stays, as other modules may still
/// name that version). Refuses a bump that would need other requirements to
/// change.
pub fn bump(
    go_mod_path: &Path,
    go_mod: &str,
    go_sum: &str,
    module: &str,
    version: &str,
    versions: &dyn ModuleVersions,
) -> Result<Bumped, BumpError> {
    let required = modfile::requirements(go_mod);
    let current = required.iter().find(|r| r.module == module).ok_or_else(|| BumpError::NotRequired {
        go_mod: go_mod_path.to_path_buf(),
        module: module.to_string(),
    })?;
    let Some(files) = versions.files_for(module, version) else {
        return Err(BumpError::NotInStore {
            source_name: versions.describe(),
            module: module.to_string(),
            version: version.to_string(),
            available: available(versions, module),
        });
    };
    let (zip, mod_file) = (files.zip, files.mod_file);
    let mod_content = std::fs::read(&mod_file).map_err(|source| BumpError::Io {
        path: mod_file.clone(),
        source,
    })?;
    for need in modfile::requirements(&String::from_utf8_lossy(&mod_content)) {
        let has = required.iter().find(|r| r.module == need.module);
        let older = match (has.and_then(|h| Version::parse(&h.version)), Version::parse(&need.version)) {
            (Some(h), Some(n)) => h < n,
            _ => has.is_none(),
        };
        if older {
            return Err(BumpError::WouldChangeOthers {
                go_mod: go_mod_path.to_path_buf(),
                module: module.to_string(),
                version: version.to_string(),
                needs: format!("{}@{}", need.module, need.version),
                has: has.map_or("nothing".into(), |h| format!("{}@{}", h.module, h.version)),
            });
        }
    }
    let from_version = current.version.clone();
    let new_go_mod = rewrite_require(go_mod, module, &from_version, version);
    let zip_hash = hash_zip(&zip)?;
    let mod_hash = hash_mod(&mod_content);
    let mut lines: Vec<String> = go_sum
        .lines()
        .filter(|l| {
            let mut p = l.split_whitespace();
            let (m, v) = (p.next(), p.next());
            let old_zip = m == Some(module) && v == Some(from_version.as_str());
            let new_any = m == Some(module) && (v == Some(version) || v == Some(&format!("{version}/go.mod")));
            !old_zip && !new_any
        })
        .map(str::to_string)
        .collect();
    lines.push(format!("{module} {version} {zip_hash}"));
    lines.push(format!("{module} {version}/go.mod {mod_hash}"));
    lines.sort_by_cached_key(|l| sum_key(l));
    lines.dedup();
    Ok(Bumped {
        go_mod: new_go_mod,
        go_sum: lines.join("\n") + "\n",
        from_version,
    })
}

/// Where `version = "next"` leads from what `go_mod` requires of `module`.
pub fn next_for(go_mod_path: &Path, go_mod: &str, module: &str, versions: &dyn ModuleVersions) -> Result<String, BumpError> {
    let current = modfile::requirements(go_mod)
        .into_iter()
        .find(|r| r.module == module)
        .ok_or_else(|| BumpError::NotRequired {
            go_mod: go_mod_path.to_path_buf(),
            module: module.to_string(),
        })?;
    match crate::gomod::versions::next_version(&current.version, &versions.versions(module)) {
        Some(next) => Ok(next.as_str().to_string()),
        None => Err(BumpError::NoNewerVersion {
            source_name: versions.describe(),
            go_mod: go_mod_path.to_path_buf(),
            module: module.to_string(),
            current: current.version,
            available: available(versions, module),
        }),
    }
}

fn available(versions: &dyn ModuleVersions, module: &str) -> String {
    let listed: Vec<String> = versions.versions(module).iter().map(|v| v.as_str().to_string()).collect();
    if listed.is_empty() {
        "no version".into()
    } else {
        listed.join(", ")
    }
}

fn sum_key(line: &str) -> (String, Option<Version>, bool, String) {
    let mut p = line.split_whitespace();
    let module = p.next().unwrap_or("").to_string();
    let v = p.next().unwrap_or("");
    let (ver, is_mod) = match v.strip_suffix("/go.mod") {
        Some(x) => (x, true),
        None => (v, false),
    };
    (module, Version::parse(ver), is_mod, line.to_string())
}

fn rewrite_require(go_mod: &str, module: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(go_mod.len());
    for line in go_mod.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_target = match words.as_slice() {
            ["require", m, v, ..] => *m == module && *v == from,
            [m, v, ..] => *m == module && *v == from,
            _ => false,
        };
        if is_target {
            out.push_str(&line.replacen(from, to, 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_are_rewritten_in_blocks_and_single_lines() {
        let m = "module x\n\nrequire a.com/b v1.0.0\nrequire (\n\tc.com/d v1.2.0\n\tc.com/dd v1.2.0\n)\n";
        let out = rewrite_require(m, "c.com/d", "v1.2.0", "v1.3.2");
        assert!(out.contains("\tc.com/d v1.3.2\n") && out.contains("\tc.com/dd v1.2.0\n"), "{out}");
        let out = rewrite_require(m, "a.com/b", "v1.0.0", "v1.1.0");
        assert!(out.contains("require a.com/b v1.1.0\n"), "{out}");
    }
}
