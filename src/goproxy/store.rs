//! Builds a GOPROXY-layout module store from Debian `golang-*-dev` packages, following a recipe, byte-reproducibly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use crate::gomod::modfile::{self, Version};
use crate::goproxy::layout::StoreLayout;

/// The recipe shipped with layerbench: the store that serves the sample service.
pub const DEFAULT_RECIPE: &str = include_str!("../../scripts/module-store.toml");

/// Where Debian's Go sources sit inside a `golang-*-dev` package.
const GOCODE: &str = "usr/share/gocode/src";

/// The `.info` time of released versions: fixed, so the store is reproducible.
const RELEASE_TIME: &str = "2000-01-01T00:00:00Z";

/// Name of the provenance file written at the store's root.
pub const PROVENANCE_FILE: &str = "layerbench-store.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to parse the module-store recipe {origin}: {source}")]
    Recipe {
        origin: String,
        source: toml::de::Error,
    },
    #[error("{what} failed: `{command}` {detail}\n{hint}")]
    Command {
        what: String,
        command: String,
        detail: String,
        hint: &'static str,
    },
    #[error("package {package}={version}: {problem}")]
    Package {
        package: String,
        version: String,
        problem: String,
    },
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write the zip {path}: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A module-store recipe (see `scripts/module-store.toml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(rename = "module")]
    pub modules: Vec<RecipeModule>,
}

/// One Debian package that provides one module version.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecipeModule {
    pub package: String,
    pub debian_version: String,
    #[serde(default = "default_suite")]
    pub suite: String,
    pub dir: String,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

fn default_suite() -> String {
    "bookworm".to_string()
}

impl Recipe {
    pub fn parse(text: &str, origin: &str) -> Result<Recipe, StoreError> {
        toml::from_str(text).map_err(|source| StoreError::Recipe {
            origin: origin.to_string(),
            source,
        })
    }

    pub fn default_recipe() -> Recipe {
        Recipe::parse(DEFAULT_RECIPE, "scripts/module-store.toml (built in)")
            .expect("the built-in recipe parses; a unit test checks it")
    }

    /// A short fingerprint of the recipe, stored with the store so a changed recipe triggers a rebuild.
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
    }
}

/// What went into the store, written as its provenance file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreReport {
    pub recipe_fingerprint: String,
    pub mirror: String,
    pub modules: Vec<StoredVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredVersion {
    pub module: String,
    pub version: String,
    pub package: String,
    pub debian_version: String,
    pub deb_sha256: String,
    pub zip_bytes: u64,
    pub files: usize,
    pub go_mod_rewrites: Vec<String>,
}

impl StoreReport {
    pub fn read(store: &Path) -> Option<StoreReport> {
        let text = std::fs::read_to_string(store.join(PROVENANCE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// A recipe entry once its package has been unpacked.
struct Unpacked {
    entry: RecipeModule,
    deb_sha256: String,
    root: PathBuf,
    raw_go_mod: Option<String>,
    module: String,
    version: String,
}

/// Builds the store described by `recipe` into `out`.
///
/// Packages are downloaded into `cache/debs` (kept between runs) and unpacked
/// into a scratch folder; the store is written to `out.partial` and renamed
/// over `out` only when complete, so a failure never leaves half a store.
pub fn build_store(recipe: &Recipe, mirror: &str, cache: &Path, out: &Path) -> Result<StoreReport, StoreError> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(io_err("create", &debs))?;
    download_packages(recipe, mirror, cache, &debs)?;

    let scratch = cache.join("unpacked");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io_err("remove", &scratch))?;
    }
    let mut unpacked = Vec::new();
    for entry in &recipe.modules {
        unpacked.push(unpack(entry, &debs, &scratch)?);
    }
    // Pseudo-versions of snapshots reuse what some go.mod already names.
    let known: Vec<String> = unpacked
        .iter()
        .filter_map(|u| u.raw_go_mod.as_deref())
        .flat_map(modfile::requirements)
        .map(|r| r.version)
        .collect();
    for u in &mut unpacked {
        u.version = match &u.entry.version {
            Some(v) => v.clone(),
            None => modfile::debian_to_go_version(&u.entry.debian_version, &known).ok_or_else(|| StoreError::Package {
                package: u.entry.package.clone(),
                version: u.entry.debian_version.clone(),
                problem: "its Debian version does not map to a Go module version; set `version` in the recipe".into(),
            })?,
        };
    }

    let mut available: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for u in &unpacked {
        let v = Version::parse(&u.version).ok_or_else(|| StoreError::Package {
            package: u.entry.package.clone(),
            version: u.entry.debian_version.clone(),
            problem: format!("`{}` is not a module version", u.version),
        })?;
        let slot = available.entry(u.module.clone()).or_default();
        if slot.contains(&v) {
            return Err(StoreError::Package {
                package: u.entry.package.clone(),
                version: u.entry.debian_version.clone(),
                problem: format!("{}@{} is provided twice by the recipe", u.module, u.version),
            });
        }
        slot.push(v);
    }

    let partial = with_suffix(out, ".partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err("remove", &partial))?;
    }
    let layout = StoreLayout::new(&partial);
    let mut stored = Vec::new();
    for u in &unpacked {
        stored.push(write_module_version(&layout, u, &available)?);
    }
    for (module, versions) in &available {
        let mut versions = versions.clone();
        versions.sort();
        let list: String = versions.iter().map(|v| format!("{}\n", v.as_str())).collect();
        let path = layout.version_dir(module).join("list");
        std::fs::write(&path, list).map_err(io_err("write", &path))?;
    }
    stored.sort_by(|a, b| (&a.module, &a.version).cmp(&(&b.module, &b.version)));
    let report = StoreReport {
        recipe_fingerprint: recipe.fingerprint(),
        mirror: mirror.to_string(),
        modules: stored,
    };
    let prov = partial.join(PROVENANCE_FILE);
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&prov, json + "\n").map_err(io_err("write", &prov))?;
    layout.validate().map_err(|e| StoreError::Package {
        package: "(store)".into(),
        version: String::new(),
        problem: e.to_string(),
    })?;

    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io_err("remove the old store", out))?;
    }
    std::fs::rename(&partial, out).map_err(io_err("move the new store into", out))?;
    std::fs::remove_dir_all(&scratch).map_err(io_err("remove", &scratch))?;
    Ok(report)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn deb_path(debs: &Path, entry: &RecipeModule) -> PathBuf {
    let safe_version = entry.debian_version.replace(':', "%3a");
    debs.join(format!("{}_{}.deb", entry.package, safe_version))
}

/// Fetches every package not yet in `debs` with `apt-get download`, through a
/// private apt configuration (bookworm and bookworm-backports at `mirror`) so
/// that the system's apt sources and state are left alone.
fn download_packages(recipe: &Recipe, mirror: &str, cache: &Path, debs: &Path) -> Result<(), StoreError> {
    let missing: Vec<&RecipeModule> = recipe.modules.iter().filter(|e| !deb_path(debs, e).is_file()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = cache.join("apt");
    for sub in ["lists/partial", "cache/archives/partial"] {
        let d = apt.join(sub);
        std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
    }
    let suites: BTreeSet<&str> = recipe.modules.iter().map(|e| e.suite.as_str()).collect();
    let sources: String = suites.iter().map(|s| format!("deb {mirror} {s} main\n")).collect();
    let sources_path = apt.join("sources.list");
    std::fs::write(&sources_path, sources).map_err(io_err("write", &sources_path))?;
    let options = [
        format!("-oDir::Etc::SourceList={}", sources_path.display()),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oDebug::NoLocking=1".to_string(),
        "-oAPT::Sandbox::User=root".to_string(),
    ];
    eprintln!("module store: apt-get update (private lists for {})", suites.iter().copied().collect::<Vec<_>>().join(", "));
    let mut update = Command::new("apt-get");
    update.args(&options).args(["-q", "update"]);
    run(update, "apt-get update of the module-store package lists", APT_HINT)?;

    let tmp = apt.join("download");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
    eprintln!("module store: apt-get download {} packages", missing.len());
    for entry in missing {
        let mut download = Command::new("apt-get");
        download
            .current_dir(&tmp)
            .args(&options)
            .args(["-q", "download"])
            .arg(format!("{}={}", entry.package, entry.debian_version));
        run(download, &format!("apt-get download {}={}", entry.package, entry.debian_version), APT_HINT)?;
        let got = only_deb_in(&tmp).ok_or_else(|| StoreError::Package {
            package: entry.package.clone(),
            version: entry.debian_version.clone(),
            problem: format!("apt-get download left no .deb in {}", tmp.display()),
        })?;
        let dest = deb_path(debs, entry);
        std::fs::rename(&got, &dest).map_err(io_err("move the download to", &dest))?;
    }
    Ok(())
}

const APT_HINT: &str = "Check that the Debian archive is reachable (LAYERBENCH_DEBIAN_MIRROR overrides the mirror) and that the pinned package versions in scripts/module-store.toml still exist there.";

fn only_deb_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
}

/// Runs a command to completion; a failure becomes an error naming what was attempted.
pub(crate) fn run(mut cmd: Command, what: &str, hint: &'static str) -> Result<std::process::Output, StoreError> {
    let command = format!("{cmd:?}").replace('"', "");
    let output = cmd.output().map_err(|e| StoreError::Command {
        what: what.to_string(),
        command: command.clone(),
        detail: format!("could not start: {e}"),
        hint,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(StoreError::Command {
            what: what.to_string(),
            command,
            detail: format!(
                "exited with {}:\n{}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
            hint,
        });
    }
    Ok(output)
}

fn unpack(entry: &RecipeModule, debs: &Path, scratch: &Path) -> Result<Unpacked, StoreError> {
    let deb = deb_path(debs, entry);
    let bytes = std::fs::read(&deb).map_err(io_err("read", &deb))?;
    let deb_sha256 = hex::encode(Sha256::digest(&bytes));
    let dest = scratch.join(format!("{}_{}", entry.package, entry.debian_version.replace(':', "%3a")));
    std::fs::create_dir_all(&dest).map_err(io_err("create", &dest))?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg(&dest);
    run(cmd, &format!("unpacking {}", deb.display()), "Is dpkg-deb installed (package dpkg)?")?;
    let root = dest.join(GOCODE).join(&entry.dir);
    if !root.is_dir() {
        return Err(StoreError::Package {
            package: entry.package.clone(),
            version: entry.debian_version.clone(),
            problem: format!("it has no folder {GOCODE}/{}; fix `dir` in the recipe", entry.dir),
        });
    }
    let go_mod_path = root.join("go.mod");
    let raw_go_mod = if go_mod_path.is_file() {
        Some(std::fs::read_to_string(&go_mod_path).map_err(io_err("read", &go_mod_path))?)
    } else {
        None
    };
    let module = match (&raw_go_mod, &entry.module) {
        (Some(text), _) => modfile::module_path(text).ok_or_else(|| StoreError::Package {
            package: entry.package.clone(),
            version: entry.debian_version.clone(),
            problem: format!("{} has no `module` line", go_mod_path.display()),
        })?,
        (None, Some(m)) => m.clone(),
        (None, None) => {
            return Err(StoreError::Package {
                package: entry.package.clone(),
                version: entry.debian_version.clone(),
                problem: format!("{}/{} has no go.mod; name the module with `module = ...` in the recipe", GOCODE, entry.dir),
            })
        }
    };
    Ok(Unpacked {
        entry: entry.clone(),
        deb_sha256,
        root,
        raw_go_mod,
        module,
        version: String::new(),
    })
}

fn write_module_version(
    layout: &StoreLayout,
    u: &Unpacked,
    available: &BTreeMap<String, Vec<Version>>,
) -> Result<StoredVersion, StoreError> {
    let vdir = layout.version_dir(&u.module);
    std::fs::create_dir_all(&vdir).map_err(io_err("create", &vdir))?;
    let (go_mod, rewrites) = match &u.raw_go_mod {
        Some(text) => {
            let r = modfile::rewrite_requirements(text, available);
            (r.text, r.changes)
        }
        None => (format!("module {}\n", u.module), vec!["no go.mod in the package: served `module` only".into()]),
    };
    let mod_path = layout.file(&u.module, &u.version, "mod");
    std::fs::write(&mod_path, &go_mod).map_err(io_err("write", &mod_path))?;
    let info_path = layout.file(&u.module, &u.version, "info");
    let info = serde_json::json!({ "Version": u.version, "Time": info_time(&u.version) });
    std::fs::write(&info_path, info.to_string() + "\n").map_err(io_err("write", &info_path))?;

    let mut files = Vec::new();
    collect_module_files(&u.root, &mut files)?;
    files.sort();
    let zip_path = layout.file(&u.module, &u.version, "zip");
    let zip_file = std::fs::File::create(&zip_path).map_err(io_err("create", &zip_path))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(zip_file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let prefix = format!("{}@{}", u.module, u.version);
    let zip_err = |source| StoreError::Zip {
        path: zip_path.clone(),
        source,
    };
    for rel in &files {
        let content = if rel == "go.mod" {
            go_mod.clone().into_bytes()
        } else {
            let p = u.root.join(rel);
            std::fs::read(&p).map_err(io_err("read", &p))?
        };
        zip.start_file(format!("{prefix}/{rel}"), options).map_err(zip_err)?;
        zip.write_all(&content).map_err(io_err("write", &zip_path))?;
    }
    zip.finish().map_err(zip_err)?.flush().map_err(io_err("write", &zip_path))?;
    let zip_bytes = std::fs::metadata(&zip_path).map_err(io_err("stat", &zip_path))?.len();
    Ok(StoredVersion {
        module: u.module.clone(),
        version: u.version.clone(),
        package: u.entry.package.clone(),
        debian_version: u.entry.debian_version.clone(),
        deb_sha256: u.deb_sha256.clone(),
        zip_bytes,
        files: files.len(),
        go_mod_rewrites: rewrites,
    })
}

/// Pseudo-versions carry their commit time; released versions get a fixed one.
fn info_time(version: &str) -> String {
    let parts: Vec<&str> = version.split('-').collect();
    if parts.len() >= 3 {
        let ts = parts[parts.len() - 2];
        let ts = ts.rsplit('.').next().unwrap_or(ts);
        if ts.len() == 14 && ts.bytes().all(|b| b.is_ascii_digit()) {
            return format!(
                "{}-{}-{}T{}:{}:{}Z",
                &ts[0..4],
                &ts[4..6],
                &ts[6..8],
                &ts[8..10],
                &ts[10..12],
                &ts[12..14]
            );
        }
    }
    RELEASE_TIME.to_string()
}

/// The files a module zip holds, relative to the module root with `/`
/// separators: no symlinks, no nested modules, no VCS or vendor folders, and
/// no names the go command rejects.
fn collect_module_files(root: &Path, out: &mut Vec<String>) -> Result<(), StoreError> {
    let mut walker = WalkDir::new(root).min_depth(1).follow_links(false).into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(root).to_path_buf();
            io_err("read", &at)(e.into())
        })?;
        let kind = entry.file_type();
        if kind.is_dir() {
            let name = entry.file_name().to_string_lossy();
            // A nested module is not part of this one.
            if matches!(name.as_ref(), ".git" | ".hg" | ".svn" | ".bzr" | "vendor") || entry.path().join("go.mod").is_file() {
                walker.skip_current_dir();
            }
        } else if kind.is_file() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map_err(|_| StoreError::Package {
                    package: root.display().to_string(),
                    version: String::new(),
                    problem: format!("{} is outside the module", path.display()),
                })?
                .to_string_lossy()
                .replace('\\', "/");
            if is_acceptable_file_path(&rel) {
                out.push(rel);
            }
        }
    }
    Ok(())
}

/// A conservative version of the go command's file-path check.
pub fn is_acceptable_file_path(rel: &str) -> bool {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1",
        "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    rel.split('/').all(|elem| {
        !elem.is_empty()
            && elem != "."
            && elem != ".."
            && !elem.ends_with('.')
            && elem.chars().all(|c| c.is_ascii_graphic() && !"\"'*<>?`|:\\".contains(c))
            && !RESERVED.iter().any(|r| {
                let stem = elem.split('.').next().unwrap_or(elem);
                stem.eq_ignore_ascii_case(r)
            })
    })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_recipe_parses_and_holds_two_toml_versions() {
        let recipe = Recipe::default_recipe();
        let toml: Vec<_> = recipe.modules.iter().filter(|m| m.dir == "github.com/BurntSushi/toml").collect();
        assert_eq!(toml.len(), 2);
    }

    #[test]
    fn a_recipe_with_an_unknown_key_is_refused() {
        let err = Recipe::parse("[[module]]\npackage='a'\ndebian_version='1'\ndir='x'\nsuit='b'\n", "r.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("r.toml") && msg.contains("suit"), "{msg}");
    }

    #[test]
    fn file_names_the_go_command_rejects_are_left_out() {
        assert!(is_acceptable_file_path("a/b_test.go"));
        assert!(!is_acceptable_file_path("a/b c.go"));
        assert!(!is_acceptable_file_path("aux.go"));
        assert!(!is_acceptable_file_path("x/what?.txt"));
    }

    #[test]
    fn pseudo_versions_carry_their_time() {
        assert_eq!(info_time("v0.0.0-20190716064945-2f068394615f"), "2019-07-16T06:49:45Z");
        assert_eq!(info_time("v1.2.0"), RELEASE_TIME);
    }
}
