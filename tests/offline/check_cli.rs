//! `layerbench check` as a CI job runs it, judging a real run's results with `--from` (no engine needed):
//! exit codes, the table, JSON, JUnit and GitHub annotations; and a bad project file exits 2 naming the line and key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The results of a real run of the sample (`tests/fixtures/report/results.json`): naive and static-scratch over edit-go-source (3 repetitions), dynamic-scratch over no-change.
fn recorded_run() -> PathBuf {
    root().join("tests/fixtures/report/results.json")
}

/// A project file for the sample's own templates, written to a temporary folder.
fn project(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sample = root().join("sample-go-app");
    let text = format!("app = {:?}\nscenarios = [\"no-change\"]\n\n{body}", sample.display().to_string()).replace("@DOCKERFILES", &sample.join("dockerfiles").display().to_string());
    let path = dir.path().join("layerbench.toml");
    std::fs::write(&path, text).expect("write the project file");
    (dir, path)
}

fn check(config: &Path, extra: &[&str], github: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerbench"));
    cmd.arg("check").arg("--config").arg(config).args(extra);
    if github {
        cmd.env("GITHUB_ACTIONS", "true");
    } else {
        cmd.env_remove("GITHUB_ACTIONS");
    }
    cmd.output().expect("run layerbench check")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const TEMPLATES: &str = r#"
[[template]]
name = "static-scratch"
dockerfile = "@DOCKERFILES/static-scratch.Dockerfile"

[[template.expect]]
scenario = "edit-go-source"
cached = ["RUN go mod download"]
executed = ["COPY . ."]
max_proxy_requests = 0
max_slowdown = 1.5

[[template]]
name = "naive"
dockerfile = "@DOCKERFILES/naive.Dockerfile"

[[template.expect]]
scenario = "edit-go-source"
cached = ["RUN go mod download"]
max_proxy_requests = 0
"#;

#[test]
fn a_template_that_lost_its_cached_download_fails_the_check_and_says_why() {
    let (dir, config) = project(TEMPLATES);
    let junit = dir.path().join("junit.xml");
    let run = recorded_run();
    let out = check(&config, &["--from", run.to_str().unwrap(), "--baseline", run.to_str().unwrap(), "--junit", junit.to_str().unwrap()], true);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // static-scratch keeps its properties; naive (sources copied before the download) loses two.
    let naive = text.split("naive (").nth(1).expect("a naive block");
    assert!(naive.contains("FAIL         cached = \"RUN go mod download\""), "{text}");
    assert!(naive.contains("executed in 3 of 3 builds"), "{text}");
    assert!(naive.contains("FAIL         max_proxy_requests = 0"), "{text}");
    let static_block = text.split("static-scratch (").nth(1).unwrap().split("naive (").next().unwrap();
    assert!(!static_block.contains("FAIL"), "{text}");
    assert!(static_block.contains("max_slowdown = 1.5"), "the same run as its own baseline is no slowdown: {text}");
    // GitHub annotations point at the Dockerfile's step line.
    let annotations: Vec<&str> = text.lines().filter(|l| l.starts_with("::error ")).collect();
    assert_eq!(annotations.len(), 2, "{text}");
    assert!(annotations.iter().all(|a| a.contains("naive.Dockerfile")), "{annotations:?}");
    // JUnit: one suite per template, one case per expectation, failures with the measured value.
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suites: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testsuite")).collect();
    assert_eq!(suites.iter().map(|s| s.attribute("name").unwrap()).collect::<Vec<_>>(), ["static-scratch", "naive"]);
    assert_eq!(suites[1].attribute("failures"), Some("2"));
    let failure = doc.descendants().find(|n| n.has_tag_name("failure")).unwrap();
    assert!(failure.attribute("message").unwrap().contains("executed in 3 of 3 builds"), "{xml}");
    let lint = Command::new("xmllint").arg("--noout").arg("--schema").arg(root().join("tests/fixtures/junit/junit-10.xsd")).arg(&junit).output().expect("xmllint (libxml2-utils)");
    assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stderr));
}

#[test]
fn a_project_whose_expectations_hold_exits_0_and_json_lists_every_judgement() {
    let passing = TEMPLATES.split("[[template]]\nname = \"naive\"").next().unwrap();
    let (_dir, config) = project(passing);
    let run = recorded_run();
    let out = check(&config, &["--from", run.to_str().unwrap(), "--json"], false);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let judgements: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let list = judgements.as_array().unwrap();
    assert_eq!(list.len(), 4, "{judgements:#}");
    // Without --baseline the slowdown cannot be judged: inconclusive, which passes unless --strict.
    let slowdown = list.iter().find(|j| j["expectation"] == "max_slowdown = 1.5").unwrap();
    assert_eq!(slowdown["outcome"], "inconclusive");
    let strict = check(&config, &["--from", run.to_str().unwrap(), "--strict"], false);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
}

#[test]
fn builds_of_another_dockerfile_under_the_templates_name_are_refused_with_exit_2() {
    // The reference run's static-scratch builds, and a project whose static-scratch is another Dockerfile.
    let body = |file: &str| format!("\n[[template]]\nname = \"static-scratch\"\ndockerfile = \"@DOCKERFILES/{file}\"\n\n[[template.expect]]\nscenario = \"edit-go-source\"\nuser = \"non-root\"\n");
    let reference = root().join("results/reference/results.json");
    let (_dir, config) = project(&body("naive.Dockerfile"));
    let out = check(&config, &["--from", reference.to_str().unwrap()], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}\n{err}", stdout(&out));
    assert!(err.contains("static-scratch: its builds there are of another template") && err.contains("dockerfiles/static-scratch.Dockerfile) had other content"), "{err}");
    assert!(!stdout(&out).contains("FAIL"), "nothing is judged: {}", stdout(&out));
    // The Dockerfile the reference built: judged, once per network profile it was built over.
    let (_dir, config) = project(&body("static-scratch.Dockerfile"));
    let out = check(&config, &["--from", reference.to_str().unwrap()], false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("edit-go-source · edit-handler · buildkit\n") && text.contains("edit-go-source · edit-handler · buildkit · remote-10mbit\n"), "{text}");
    assert!(!text.contains("does not record what"), "the reference records its Dockerfiles' digests: {text}");
}

#[test]
fn a_typo_in_the_project_file_exits_2_naming_the_file_the_line_and_the_key() {
    let (_dir, config) = project(&TEMPLATES.replace("max_proxy_requests = 0\nmax_slowdown", "max_proxy_request = 0\nmax_slowdown"));
    let run = recorded_run();
    let out = check(&config, &["--from", run.to_str().unwrap()], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("layerbench.toml") && err.contains("line 13") && err.contains("max_proxy_request"), "{err}");
    let (_dir, config) = project(&TEMPLATES.replace("cached = [\"RUN go mod download\"]\nexecuted", "cached = [\"RUN go mod dowload\"]\nexecuted"));
    let out = check(&config, &["--from", run.to_str().unwrap()], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("matches no step"), "{err}");
}

/// `layerbench ARGS` in `dir` (no engine is reached: every input here is refused first).
fn layerbench_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .args(args)
        .current_dir(dir)
        .env("LAYERBENCH_CACHE", dir.join("cache"))
        .env("DOCKER_HOST", "unix:///nonexistent/layerbench-test.sock")
        .output()
        .expect("run layerbench")
}

/// Every command exits 2 on bad input, naming what is wrong, and never 3 (which means the environment).
#[test]
fn bad_input_exits_2_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.json"), "").unwrap();
    std::fs::write(d.join("malformed.json"), "{\"schema_version\": 3, \"run_id\": ").unwrap();
    let whole = std::fs::read_to_string(recorded_run()).unwrap();
    std::fs::write(d.join("cut.json"), &whole[..whole.len() / 2]).unwrap();
    // A results file whose records carry no cell index cannot be merged.
    let mut uncelled: serde_json::Value = serde_json::from_str(&whole).unwrap();
    for record in uncelled["records"].as_array_mut().unwrap() {
        record.as_object_mut().unwrap().remove("cell");
    }
    std::fs::write(d.join("uncelled.json"), serde_json::to_string(&uncelled).unwrap()).unwrap();
    std::fs::write(d.join("bad-scenario.toml"), "name = \"s\"\ndescription = \"d\"\ncolour = \"red\"\n[[step]]\nname = \"a\"\n").unwrap();
    std::fs::write(d.join("bad-suite.toml"), "name = \"s\"\ndescription = \"d\"\nflavour = 1\n").unwrap();
    let sample = root().join("sample-go-app").display().to_string();
    let scenarios = d.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["verdicts", "missing.json"], "missing.json"),
        (vec!["verdicts", "empty.json"], "empty.json"),
        (vec!["report", "malformed.json"], "malformed.json"),
        (vec!["report", "cut.json"], "cut.json"),
        (vec!["compare", "missing.json", "cut.json"], "missing.json"),
        (vec!["merge", "uncelled.json", "uncelled.json", "--out", "merged"], "no `cell` index"),
        (vec!["merge", "missing.json", "--out", "merged"], "missing.json"),
        (vec!["check", "--config", "missing.toml"], "missing.toml"),
        (vec!["run", "--app", "no-such-app"], "no-such-app"),
        (vec!["run", "--app", &sample, "--variant", "no-such-template"], "no-such-template"),
        (vec!["run", "--app", &sample, "--scenario", "no-such-scenario"], "no-such-scenario"),
        (vec!["run", "--app", &sample, "--scenarios-dir", &scenarios, "--scenario", "bad-scenario"], "colour"),
        (vec!["run", "--suite", "bad-suite.toml"], "flavour"),
        (vec!["run", "--suite", "no-such-suite"], "no-such-suite"),
    ];
    for (args, named) in cases {
        let out = layerbench_in(d, &args);
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "layerbench {}: {text}", args.join(" "));
        assert!(text.contains(named), "layerbench {}: the error names {named}: {text}", args.join(" "));
    }
}
