//! What layerbench ships inside its binary: the scenarios, the suites and the bundled sample app, so an installed `layerbench` needs no source tree.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

use crate::scenario::{self, Scenario, ScenarioError};

static SCENARIOS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/scenarios");
static SAMPLE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/sample-go-app");

/// The `--app` value (and suite `app`) that names the bundled sample.
pub const SAMPLE_APP: &str = "@sample";

/// The source commit this binary was built from (`+dirty` with uncommitted changes), when it was built from a git checkout.
pub fn git_commit() -> Option<String> {
    Some(env!("LAYERBENCH_GIT_COMMIT").to_string()).filter(|c| !c.is_empty())
}

/// The shipped scenario files: (how errors name them, text).
pub fn scenario_files() -> Vec<(PathBuf, &'static str)> {
    let mut files: Vec<(PathBuf, &'static str)> = SCENARIOS
        .files()
        .filter(|f| f.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|f| Some((Path::new("(shipped) scenarios").join(f.path()), f.contents_utf8()?)))
        .collect();
    files.sort();
    files
}

/// A shipped suite by name: (how errors name it, text).
pub fn suite_file(name: &str) -> Option<(PathBuf, &'static str)> {
    let file = SCENARIOS.get_file(format!("suites/{name}.toml"))?;
    Some((Path::new("(shipped) scenarios").join(file.path()), file.contents_utf8()?))
}

/// The names of the shipped suites.
pub fn suite_names() -> Vec<String> {
    let mut names: Vec<String> = SCENARIOS
        .get_dir("suites")
        .map(|d| d.files().filter_map(|f| f.path().file_stem().map(|s| s.to_string_lossy().to_string())).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The scenarios named (a name of a shipped scenario, or of one in `dir` when
/// given, or a path to a `.toml` file), in the order given; when `names` is
/// empty, every scenario of `dir` (or every shipped one), leaving out those
/// marked `sample_only` unless `for_sample`.
pub fn select_scenarios(dir: Option<&Path>, names: &[String], for_sample: bool) -> Result<Vec<Scenario>, ScenarioError> {
    let all = match dir {
        Some(dir) => scenario::load_dir(dir)?,
        None => {
            let mut all = Vec::new();
            for (path, text) in scenario_files() {
                all.push(Scenario::parse(text, &path)?);
            }
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        }
    };
    if names.is_empty() {
        return Ok(all.into_iter().filter(|s| for_sample || !s.sample_only).collect());
    }
    names
        .iter()
        .map(|n| {
            if n.ends_with(".toml") {
                return Scenario::load(Path::new(n));
            }
            all.iter().find(|s| &s.name == n).cloned().ok_or_else(|| ScenarioError::Unknown {
                name: n.clone(),
                dir: dir.map_or_else(|| PathBuf::from("(shipped) scenarios"), Path::to_path_buf),
                available: all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// The bundled sample app, written once below `cache` (a folder named by a
/// hash of its contents, so a new layerbench never reuses an older sample).
pub fn sample_app(cache: &Path) -> std::io::Result<PathBuf> {
    let mut files = Vec::new();
    collect(&SAMPLE, &mut files);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for (path, bytes) in &files {
        sha2::Digest::update(&mut hasher, path.to_string_lossy().as_bytes());
        sha2::Digest::update(&mut hasher, [0u8]);
        sha2::Digest::update(&mut hasher, bytes);
    }
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let dir = cache.join("shipped").join(format!("sample-go-app-{}", &digest[..12]));
    if dir.is_dir() {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    for (path, bytes) in &files {
        let target = partial.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
    }
    std::fs::rename(&partial, &dir)?;
    Ok(dir)
}

fn collect(dir: &Dir<'static>, out: &mut Vec<(PathBuf, &'static [u8])>) {
    for f in dir.files() {
        out.push((f.path().to_path_buf(), f.contents()));
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_and_suite_in_the_source_tree_is_shipped_and_parses() {
        let on_disk = scenario::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")).unwrap();
        let shipped = select_scenarios(None, &[], true).unwrap();
        assert_eq!(on_disk, shipped);
        let for_any_app = select_scenarios(None, &[], false).unwrap();
        assert!(for_any_app.len() < shipped.len() && for_any_app.iter().all(|s| !s.sample_only));
        assert!(for_any_app.iter().any(|s| s.name == "edit-go-source"));
        assert!(suite_names().contains(&"claims".to_string()));
        assert!(suite_file("claims").is_some());
    }

    #[test]
    fn the_sample_is_written_once_and_matches_the_source_tree() {
        let cache = tempfile::tempdir().unwrap();
        let dir = sample_app(cache.path()).unwrap();
        assert_eq!(sample_app(cache.path()).unwrap(), dir);
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-go-app");
        for rel in ["go.mod", "go.sum", "main.go", ".dockerignore", "dockerfiles/layered.Dockerfile", "dockerfiles/naive-no-dockerignore.Dockerfile.dockerignore"] {
            assert_eq!(std::fs::read(dir.join(rel)).unwrap(), std::fs::read(source.join(rel)).unwrap(), "{rel}");
        }
    }
}
