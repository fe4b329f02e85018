//! `layerbench check` on the example templates, built for real: the good template passes every
//! expectation and each bad one fails exactly on its own mistake, with the reason; the exit code
//! and the JUnit file say so. The examples' own project file is used, with the tiny fixture app
//! (which builds in seconds) in place of the sample service.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_passes_the_good_example_template_and_fails_each_bad_one_on_its_own_mistake() {
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let examples = root().join("examples/templates");
    for entry in std::fs::read_dir(&examples).expect("examples/templates") {
        let path = entry.expect("an entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).expect("copy an example");
    }
    let config = dir.path().join("layerbench.toml");
    let text = std::fs::read_to_string(&config).expect("the examples' project file");
    assert!(text.contains("app = \"../../sample-go-app\""), "the examples build the sample service");
    let tiny = root().join("tests/fixtures/tiny-app");
    std::fs::write(&config, text.replace("app = \"../../sample-go-app\"", &format!("app = {:?}", tiny.display().to_string()))).unwrap();
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .current_dir(dir.path())
        .args(["check", "--json", "--junit", "junit.xml", "--proxy-port", "48191", "--out"])
        .arg(dir.path().join("results"))
        .env("GITHUB_ACTIONS", "true")
        .output()
        .expect("run layerbench check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a bad template fails the check:\n{stderr}");
    assert!(stderr.contains("builds in 10 cells"), "it says how many builds it runs first:\n{stderr}");
    let judgements: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let list = judgements.as_array().expect("a list of judgements");
    let failed: BTreeSet<(String, String)> = list
        .iter()
        .filter(|j| j["outcome"] != "pass")
        .map(|j| (j["template"].as_str().unwrap().to_string(), j["expectation"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("sources-first", "cached = \"RUN go mod download\""),
        ("sources-first", "max_proxy_requests = 0"),
        ("no-git-ignore", "all_cached = true"),
        ("runs-as-root", "user = \"non-root\""),
        ("cgo-scratch", "binary = \"static\""),
        ("cgo-scratch", "probe = true"),
    ]
    .iter()
    .map(|(t, e)| (t.to_string(), e.to_string()))
    .collect();
    assert_eq!(failed, expected, "{judgements:#}");
    let reason = |template: &str, expectation: &str| {
        list.iter()
            .find(|j| j["template"] == template && j["expectation"] == expectation)
            .and_then(|j| j["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    // Why each one failed, in the words of the records.
    let download = reason("sources-first", "cached = \"RUN go mod download\"");
    assert!(download.contains("`COPY . .`") && download.contains("files: main.go"), "{download}");
    let git = reason("no-git-ignore", "all_cached = true");
    assert!(git.contains("`COPY . .`") && git.contains("files: .git/"), "{git}");
    assert!(reason("runs-as-root", "user = \"non-root\"").contains("no USER"));
    assert!(reason("cgo-scratch", "binary = \"static\"").contains("libc.so.6"));
    assert!(reason("cgo-scratch", "probe = true").contains("exited"));
    // The JUnit file: one suite per template, failures where the table has them.
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed JUnit XML");
    let failures: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .map(|s| (s.attribute("name").unwrap().to_string(), s.attribute("failures").unwrap().to_string()))
        .collect();
    assert_eq!(
        failures,
        [("good", "0"), ("sources-first", "2"), ("no-git-ignore", "1"), ("runs-as-root", "1"), ("cgo-scratch", "2")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // With GITHUB_ACTIONS=true each failure points at its Dockerfile (on stderr, since stdout carries the JSON).
    let annotations: Vec<&str> = stderr.lines().filter(|l| l.starts_with("::error file=")).collect();
    assert_eq!(annotations.len(), expected.len(), "{stderr}");
    assert!(annotations.iter().any(|a| a.contains("sources-first.Dockerfile,line=")), "{annotations:?}");
    assert!(dir.path().join("results/results.json").is_file(), "results.json is written as `run` writes it");
}
