//! The shipped scenarios over the real module store: on the sample, the generic dependency bump is the claim's explicit one.

use std::path::Path;

use layerbench::goproxy::layout::StoreLayout;
use layerbench::paths;
use layerbench::scenario::{self, Scenario};
use layerbench::workspace::{Applied, Layout, Workspace};

/// go.mod, go.sum and the notes after every step of `scenario` on a copy of the sample.
fn applied_to_sample(scenario: &Scenario, store: &StoreLayout, scratch: &Path) -> (String, String, Vec<String>) {
    let app = paths::sample_app_dir();
    let root = scratch.join(&scenario.name);
    let layout = Layout::new(&app, &app, &app.join("dockerfiles/static-scratch.Dockerfile")).unwrap();
    let ws = Workspace::create(&layout, &root, None)
        .unwrap()
        .with_origin(&app, &scenario.name);
    let mut notes = Vec::new();
    for step in &scenario.steps {
        let mut applied = Applied::default();
        for change in &step.changes {
            ws.apply(change, "n", &step.name, store, &mut applied).unwrap_or_else(|e| panic!("{e}"));
        }
        notes.extend(applied.notes);
    }
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    (read("go.mod"), read("go.sum"), notes)
}

#[test]
fn on_the_sample_bumping_the_first_dependency_to_the_next_release_is_the_explicit_toml_bump() {
    let store = StoreLayout::new(paths::store_dir());
    store.validate().unwrap_or_else(|e| panic!("run `layerbench setup` first: {e}"));
    let names = ["bump-dependency".to_string(), "bump-first-dependency".to_string()];
    let scenarios = scenario::select(&paths::scenarios_dir(), &names).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (explicit_mod, explicit_sum, explicit_notes) = applied_to_sample(&scenarios[0], &store, scratch.path());
    let (generic_mod, generic_sum, generic_notes) = applied_to_sample(&scenarios[1], &store, scratch.path());
    assert_eq!(explicit_notes, ["github.com/BurntSushi/toml v1.2.0 -> v1.3.2"]);
    assert_eq!(generic_notes, ["github.com/BurntSushi/toml v1.2.0 -> v1.3.2 (first direct dependency, next)"]);
    assert_eq!(generic_mod, explicit_mod);
    assert_eq!(generic_sum, explicit_sum);
    let original = std::fs::read_to_string(paths::sample_app_dir().join("go.sum")).unwrap();
    assert_ne!(generic_sum, original, "the bump changed go.sum");
}

/// Copies the sample into `to` (its Go files, go.mod and go.sum; not its Dockerfiles).
fn copy_sample(to: &Path) {
    let app = paths::sample_app_dir();
    std::fs::create_dir_all(to).unwrap();
    for entry in walkdir::WalkDir::new(&app).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&app).unwrap();
        if rel.starts_with("dockerfiles") {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Go apps in the shapes real repositories have, each with a Dockerfile: the name and the app's folder.
fn app_shapes(root: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let dockerfile = "FROM golang:1.23\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build ./...\n";
    let mut shapes = Vec::new();
    // Only the standard library: no go.sum.
    let d = root.join("no-go-sum");
    write(&d.join("go.mod"), "module example.com/nosum\n\ngo 1.22\n");
    write(&d.join("main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n");
    shapes.push(("no go.sum", d));
    // The main package under cmd/, the rest under internal/.
    let d = root.join("cmd-main");
    copy_sample(&d);
    std::fs::create_dir_all(d.join("cmd/sample")).unwrap();
    std::fs::rename(d.join("main.go"), d.join("cmd/sample/main.go")).unwrap();
    shapes.push(("main package under cmd/", d));
    // Several main packages.
    let d = root.join("several-mains");
    copy_sample(&d);
    write(&d.join("cmd/tool/main.go"), "package main\n\nfunc main() {}\n");
    shapes.push(("several main packages", d));
    // A go.work beside go.mod.
    let d = root.join("go-work");
    copy_sample(&d);
    write(&d.join("go.work"), "go 1.22\n\nuse .\n");
    shapes.push(("a go.work", d));
    // Vendored modules.
    let d = root.join("vendored");
    copy_sample(&d);
    write(&d.join("vendor/modules.txt"), "# github.com/BurntSushi/toml v1.2.0\n## explicit; go 1.16\ngithub.com/BurntSushi/toml\n");
    write(&d.join("vendor/github.com/BurntSushi/toml/decode.go"), "package toml\n");
    shapes.push(("vendored modules", d));
    for (_, d) in &shapes {
        write(&d.join("Dockerfile"), dockerfile);
    }
    shapes
}

/// Every shipped scenario applies to every shape of app: a change whose role the shape lacks (no go.sum to touch,
/// nothing to bump in a module without dependencies, a bump of vendored modules) is skipped with a note naming
/// why; nothing fails.
#[test]
fn every_shipped_scenario_applies_to_every_shape_of_go_app_or_skips_a_change_with_a_note() {
    let store = StoreLayout::new(paths::store_dir());
    store.validate().unwrap_or_else(|e| panic!("run `layerbench setup` first: {e}"));
    let scratch = tempfile::tempdir().unwrap();
    let scenarios = layerbench::shipped::select_scenarios(None, &[], false).unwrap();
    assert!(scenarios.len() >= 8, "{}", scenarios.len());
    let mut skipped = std::collections::BTreeMap::new();
    for (shape, app) in app_shapes(&scratch.path().join("apps")) {
        for scenario in &scenarios {
            let root = scratch.path().join("ws").join(app.file_name().unwrap()).join(&scenario.name);
            let layout = Layout::new(&app, &app, &app.join("Dockerfile")).unwrap();
            let ws = Workspace::create(&layout, &root, None).unwrap().with_origin(&app, &scenario.name);
            for step in &scenario.steps {
                let mut applied = Applied::default();
                for change in &step.changes {
                    ws.apply(change, "n", &step.name, &store, &mut applied)
                        .unwrap_or_else(|e| panic!("{shape}: scenario {}: {e}", scenario.name));
                }
                for note in applied.notes.iter().filter(|n| n.starts_with("skipped")) {
                    skipped.insert((shape, scenario.name.clone()), note.clone());
                }
            }
        }
    }
    let skipped_in = |shape: &str| skipped.keys().filter(|(s, _)| *s == shape).map(|(_, n)| n.as_str()).collect::<Vec<_>>();
    assert!(skipped_in("no go.sum").contains(&"touch-only"), "{skipped:#?}");
    assert!(skipped_in("no go.sum").contains(&"bump-first-dependency"), "{skipped:#?}");
    assert!(skipped_in("vendored modules").contains(&"bump-first-dependency"), "{skipped:#?}");
    assert!(skipped_in("main package under cmd/").is_empty() && skipped_in("a go.work").is_empty(), "{skipped:#?}");
    assert!(skipped.values().all(|n| n.contains("scenario `")), "each note names the scenario and step: {skipped:#?}");
}
