//! The module store built from Debian packages is complete and byte-reproducible.

use std::collections::BTreeMap;
use std::path::Path;

use layerbench::goproxy::layout::StoreLayout;
use layerbench::goproxy::store::{build_store, Recipe};
use layerbench::paths;

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn building_the_store_twice_gives_byte_identical_files_with_two_toml_versions() {
    let recipe = Recipe::default_recipe();
    let scratch = tempfile::tempdir().unwrap();
    let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
    let cache = paths::cache_dir();
    build_store(&recipe, &paths::debian_mirror(), &cache, &a).unwrap_or_else(|e| panic!("{e}"));
    build_store(&recipe, &paths::debian_mirror(), &cache, &b).unwrap_or_else(|e| panic!("{e}"));
    let (fa, fb) = (files(&a), files(&b));
    assert!(fa.len() > 100, "a realistic store has many files, got {}", fa.len());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(fb[name] == *bytes, "{name} differs between two builds");
    }
    let modules = StoreLayout::new(&a).validate().unwrap();
    let toml = modules.iter().find(|m| m.path == "github.com/BurntSushi/toml").expect("toml is in the store");
    assert_eq!(toml.versions, vec!["v1.2.0", "v1.3.2"]);
    assert!(a.join("github.com/!burnt!sushi/toml/@v/v1.3.2.zip").is_file(), "capitals are escaped on disk");
    // Every stored go.mod only requires versions the store holds.
    for m in &modules {
        for v in &m.versions {
            let go_mod = std::fs::read_to_string(StoreLayout::new(&a).file(&m.path, v, "mod")).unwrap();
            for r in layerbench::gomod::modfile::requirements(&go_mod) {
                let held = modules.iter().find(|x| x.path == r.module).map(|x| x.versions.contains(&r.version));
                assert_eq!(held, Some(true), "{}@{v} requires {}@{} which the store lacks", m.path, r.module, r.version);
            }
        }
    }
}

#[test]
fn the_store_hashes_agree_with_the_go_sum_that_go_wrote_for_the_sample() {
    let store = StoreLayout::new(paths::store_dir());
    store.validate().unwrap_or_else(|e| panic!("run `layerbench setup` first: {e}"));
    let go_sum = std::fs::read_to_string(paths::sample_app_dir().join("go.sum")).unwrap();
    let mut checked = 0;
    for line in go_sum.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (module, version, hash) = (parts[0], parts[1], parts[2]);
        let ours = match version.strip_suffix("/go.mod") {
            Some(v) => layerbench::gomod::sum::hash_mod(&std::fs::read(store.file(module, v, "mod")).unwrap()),
            None => layerbench::gomod::sum::hash_zip(&store.file(module, version, "zip")).unwrap(),
        };
        assert_eq!(ours, hash, "{module} {version}");
        checked += 1;
    }
    assert!(checked > 30);
}
