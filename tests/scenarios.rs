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
