//! Bad input never panics: the parsers of scenario, suite and project files, Dockerfiles, `.dockerignore` files,
//! both builders' recorded build streams and results files, fed the shipped files mutated (structured edits of
//! their values, then byte flips, insertions of any Unicode, line deletions, duplications and swaps, truncation).
//! Every error names the file and the line.
//!
//! `cargo test --release --test offline fuzz::` runs 10,000 cases per parser (about 12 s on 2 cores, so CI runs them all);
//! `LAYERBENCH_FUZZ_CASES=N` sets another number.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use layerbench::context::{IgnoreDialect, IgnoreRules};
use layerbench::dockerfile::DockerfileModel;
use layerbench::engine::stream::BuildStream;
use layerbench::engine::{Builder, StepReport};
use layerbench::run::project::Project;
use layerbench::results::Results;
use layerbench::scenario::Scenario;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cases per parser.
fn cases() -> u32 {
    std::env::var("LAYERBENCH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// How many cases a parser accepted and refused, printed at the end (`--nocapture`) to show the mutations reach past the first check.
#[derive(Default)]
struct Tally {
    accepted: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
}

impl Tally {
    fn count<T, E>(&self, result: &Result<T, E>) {
        let counter = if result.is_ok() { &self.accepted } else { &self.refused };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn print(&self, what: &str) {
        let load = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{what}: {} accepted, {} refused", load(&self.accepted), load(&self.refused));
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    })
}

/// The files of `dir` whose names end with `suffix`, read, with their paths.
fn files(dir: &str, suffix: &str) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {suffix} files in {dir}");
    out
}

// ---------------------------------------------------------------- mutations

/// One edit of a file's text.
#[derive(Debug, Clone)]
enum Mutation {
    Byte(Index, u8),
    Insert(Index, String),
    Delete(Index, u8),
    DeleteLine(Index),
    DuplicateLine(Index, Index),
    SwapLines(Index, Index),
    Truncate(Index),
}

/// Text to insert: a token of the format, any Unicode, or both.
fn insertion(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(tokens).prop_map(str::to_string),
        1 => prop::collection::vec(any::<char>(), 1..6).prop_map(String::from_iter),
        1 => (prop::sample::select(tokens), any::<char>()).prop_map(|(t, c)| format!("{t}{c}")),
    ]
}

fn mutation(tokens: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        4 => (any::<Index>(), insertion(tokens)).prop_map(|(i, s)| Mutation::Insert(i, s)),
        1 => (any::<Index>(), 1..16u8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DuplicateLine(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutations(tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(tokens), 0..5)
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let lines = |bytes: &[u8]| -> Vec<Vec<u8>> { bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect() };
        match m {
            Mutation::Byte(i, b) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Mutation::Byte(..) => {}
            Mutation::Insert(i, s) => {
                let tail = bytes.split_off(i.index(bytes.len() + 1));
                bytes.extend_from_slice(s.as_bytes());
                bytes.extend(tail);
            }
            Mutation::Delete(i, n) => {
                let at = i.index(bytes.len() + 1);
                let end = (at + usize::from(*n)).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::DeleteLine(i) => {
                let mut all = lines(&bytes);
                if !all.is_empty() {
                    all.remove(i.index(all.len()));
                }
                bytes = all.concat();
            }
            Mutation::DuplicateLine(a, b) => {
                let mut all = lines(&bytes);
                if !all.is_empty() {
                    let line = all[a.index(all.len())].clone();
                    all.insert(b.index(all.len() + 1), line);
                }
                bytes = all.concat();
            }
            Mutation::SwapLines(a, b) => {
                let mut all = lines(&bytes);
                if !all.is_empty() {
                    let (a, b) = (a.index(all.len()), b.index(all.len()));
                    all.swap(a, b);
                }
                bytes = all.concat();
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A value written over a key of a structured file.
#[derive(Debug, Clone)]
enum Leaf {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    EmptyList,
    EmptyTable,
    /// JSON `null`; in TOML, the key is removed.
    Null,
}

/// An edit of one value of a structured file (any node but the root, counted depth first).
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, Leaf),
    Remove(Index),
    Rename(Index, String),
}

fn leaf(tokens: &'static [&'static str]) -> impl Strategy<Value = Leaf> {
    prop_oneof![
        4 => insertion(tokens).prop_map(Leaf::Str),
        1 => prop::sample::select(VALUES).prop_map(|s| Leaf::Str(s.to_string())),
        2 => prop_oneof![any::<i64>(), -3..100i64].prop_map(Leaf::Int),
        1 => any::<f64>().prop_map(Leaf::Float),
        1 => any::<bool>().prop_map(Leaf::Bool),
        1 => Just(Leaf::EmptyList),
        1 => Just(Leaf::EmptyTable),
        1 => Just(Leaf::Null),
    ]
}

fn edits(tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        6 => (any::<Index>(), leaf(tokens)).prop_map(|(i, l)| Edit::Set(i, l)),
        2 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), prop::sample::select(KEYS)).prop_map(|(i, k)| Edit::Rename(i, k.to_string())),
    ];
    prop::collection::vec(edit, 0..4)
}

/// Values that mean something to the parsers: paths that leave the app, roles, versions, sizes, patterns.
const VALUES: &[&str] = &[
    "..", "../x", "/etc/passwd", "a/../../b", "{main_go}", "{go_mod}", "{nope}", "{first_direct_dependency}", "next", "v1.2.3",
    "v0.0.0-", "0755", "999", "1000:1000", "root:root", "baseline", "loopback", "buildkit", "legacy", "30MB", "1.5GiB", "-1kB",
    "line:0", "line:99999999999999999999", "RUN *", "[", "*", "", " ", "\n", "static", "non-root", "@sample", "m@v", "@",
];

/// Keys the files use, to rename a key to (a typo for one key is often another key).
const KEYS: &[&str] = &[
    "name", "description", "step", "change", "kind", "file", "text", "target", "link", "cells", "variants", "scenarios", "builders",
    "repetitions", "networks", "network", "app", "context", "template", "dockerfile", "expect", "cached", "executed", "probe",
    "records", "layers", "schema_version", "wall_ms", "typo",
];

fn toml_leaf(l: &Leaf) -> Option<toml::Value> {
    Some(match l {
        Leaf::Str(s) => toml::Value::String(s.clone()),
        Leaf::Int(i) => toml::Value::Integer(*i),
        Leaf::Float(f) => toml::Value::Float(*f),
        Leaf::Bool(b) => toml::Value::Boolean(*b),
        Leaf::EmptyList => toml::Value::Array(Vec::new()),
        Leaf::EmptyTable => toml::Value::Table(toml::Table::new()),
        Leaf::Null => return None,
    })
}

fn json_leaf(l: &Leaf) -> serde_json::Value {
    match l {
        Leaf::Str(s) => serde_json::Value::String(s.clone()),
        Leaf::Int(i) => serde_json::json!(i),
        Leaf::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Leaf::Bool(b) => serde_json::Value::Bool(*b),
        Leaf::EmptyList => serde_json::json!([]),
        Leaf::EmptyTable => serde_json::json!({}),
        Leaf::Null => serde_json::Value::Null,
    }
}

/// A tree both TOML and JSON values can be edited through.
trait Tree: Sized {
    /// The children: (key, value) for tables, ("", value) for arrays.
    fn children(&mut self) -> Vec<(String, &mut Self)>;
    fn count(&mut self) -> usize {
        self.children().into_iter().map(|(_, c)| 1 + c.count()).sum()
    }
    /// Applies `op` to the parent of the `n`-th node (depth first) and the node's key or index.
    fn at_parent(&mut self, n: &mut usize, op: &mut dyn FnMut(&mut Self, &str, usize)) -> bool {
        let keys: Vec<String> = self.children().into_iter().map(|(k, _)| k).collect();
        for (i, key) in keys.iter().enumerate() {
            if *n == 0 {
                op(self, key, i);
                return true;
            }
            *n -= 1;
            let child = self.children().into_iter().nth(i).map(|(_, c)| c);
            if child.is_some_and(|c| c.at_parent(n, op)) {
                return true;
            }
        }
        false
    }
}

impl Tree for toml::Value {
    fn children(&mut self) -> Vec<(String, &mut Self)> {
        match self {
            toml::Value::Table(t) => t.iter_mut().map(|(k, v)| (k.clone(), v)).collect(),
            toml::Value::Array(a) => a.iter_mut().map(|v| (String::new(), v)).collect(),
            _ => Vec::new(),
        }
    }
}

impl Tree for serde_json::Value {
    fn children(&mut self) -> Vec<(String, &mut Self)> {
        match self {
            serde_json::Value::Object(o) => o.iter_mut().map(|(k, v)| (k.clone(), v)).collect(),
            serde_json::Value::Array(a) => a.iter_mut().map(|v| (String::new(), v)).collect(),
            _ => Vec::new(),
        }
    }
}

fn edit_toml(text: &str, edits: &[Edit]) -> String {
    let Ok(mut doc) = text.parse::<toml::Table>().map(toml::Value::Table) else { return text.to_string() };
    for e in edits {
        let total = doc.count();
        if total == 0 {
            break;
        }
        let (Edit::Set(i, _) | Edit::Remove(i) | Edit::Rename(i, _)) = e;
        let mut n = i.index(total);
        doc.at_parent(&mut n, &mut |parent, key, index| match (parent, e) {
            (toml::Value::Table(t), Edit::Set(_, l)) => match toml_leaf(l) {
                Some(v) => {
                    t.insert(key.to_string(), v);
                }
                None => {
                    t.remove(key);
                }
            },
            (toml::Value::Table(t), Edit::Remove(_)) => {
                t.remove(key);
            }
            (toml::Value::Table(t), Edit::Rename(_, to)) => {
                if let Some(v) = t.remove(key) {
                    t.insert(to.clone(), v);
                }
            }
            (toml::Value::Array(a), Edit::Set(_, l)) => match toml_leaf(l) {
                Some(v) => a[index] = v,
                None => {
                    a.remove(index);
                }
            },
            (toml::Value::Array(a), Edit::Remove(_)) => {
                a.remove(index);
            }
            _ => {}
        });
    }
    toml::to_string(&doc).unwrap_or_else(|_| text.to_string())
}

fn edit_json(text: &str, edits: &[Edit], pretty: bool) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(text) else { return text.to_string() };
    for e in edits {
        let total = doc.count();
        if total == 0 {
            break;
        }
        let (Edit::Set(i, _) | Edit::Remove(i) | Edit::Rename(i, _)) = e;
        let mut n = i.index(total);
        doc.at_parent(&mut n, &mut |parent, key, index| match (parent, e) {
            (serde_json::Value::Object(o), Edit::Set(_, l)) => {
                o.insert(key.to_string(), json_leaf(l));
            }
            (serde_json::Value::Object(o), Edit::Remove(_)) => {
                o.remove(key);
            }
            (serde_json::Value::Object(o), Edit::Rename(_, to)) => {
                if let Some(v) = o.remove(key) {
                    o.insert(to.clone(), v);
                }
            }
            (serde_json::Value::Array(a), Edit::Set(_, l)) => a[index] = json_leaf(l),
            (serde_json::Value::Array(a), Edit::Remove(_)) => {
                a.remove(index);
            }
            _ => {}
        });
    }
    let written = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) };
    written.unwrap_or_else(|_| text.to_string())
}

// ---------------------------------------------------------------- what every error must say

/// An error names the file, a line, and is one line.
fn names_file_and_line(error: &str, path: &Path) -> Result<(), TestCaseError> {
    let shown = path.display().to_string();
    prop_assert!(error.contains(&shown), "the error does not name {shown}: {error}");
    let has_line = error.match_indices("line ").any(|(i, _)| error[i + 5..].starts_with(|c: char| c.is_ascii_digit()));
    prop_assert!(has_line, "the error names no line: {error}");
    prop_assert!(!error.contains('\n'), "the error is not one line: {error}");
    Ok(())
}

const TOML_TOKENS: &[&str] = &[
    "\"", "'", "=", "[", "]", "[[", "]]", "{", "}", ",", "\n", "#", ".", "\\", "\"\"\"", "0", "-1", "1e400", "nan", "inf", "true",
    "99999999999999999999", "\"..\"", "\"/etc\"", "\"{main_go}\"", "kind = \"symlink\"", "kind = \"nope\"", "[[step]]\n",
    "[[step.change]]\n", "[[cells]]\n", "[[template]]\n", "[[template.expect]]\n", "name = \"x\"\n", "é", "\u{202e}", "\u{0}",
    "\r", "\t", "🦀", "\\u0000", "1979-05-27T07:32:00Z",
];

// ---------------------------------------------------------------- scenario, suite and project files

/// A seed file, edits of its values, then edits of its text.
fn toml_case() -> impl Strategy<Value = (Index, Vec<Edit>, Vec<Mutation>)> {
    (any::<Index>(), edits(TOML_TOKENS), mutations(TOML_TOKENS))
}

#[test]
fn mutated_scenario_files_never_panic_and_every_error_names_the_file_and_line() {
    let seeds = files("scenarios", ".toml");
    let tally = Tally::default();
    runner()
        .run(&toml_case(), |(seed, edits, mutations)| {
            let (path, text) = &seeds[seed.index(seeds.len())];
            let text = apply(&edit_toml(text, &edits), &mutations);
            let parsed = Scenario::parse(&text, path);
            tally.count(&parsed);
            match parsed {
                Ok(s) => {
                    for step in &s.steps {
                        for change in &step.changes {
                            let _ = change.paths();
                        }
                    }
                }
                Err(e) => names_file_and_line(&e.to_string(), path)?,
            }
            Ok(())
        })
        .unwrap();
    tally.print("scenario files");
}

#[test]
fn mutated_suite_files_never_panic_and_every_error_names_the_file_and_line() {
    let seeds = files("scenarios/suites", ".toml");
    let app = root().join("sample-go-app");
    let tally = Tally::default();
    runner()
        .run(&toml_case(), |(seed, edits, mutations)| {
            let (path, text) = &seeds[seed.index(seeds.len())];
            let text = apply(&edit_toml(text, &edits), &mutations);
            let parsed = layerbench::run::suite::parse(&text, path);
            tally.count(&parsed);
            match parsed {
                Ok(suite) => {
                    // Its cells: unknown variants and scenarios are errors (that name them), never panics.
                    let _ = layerbench::run::suite::cells(&suite, &app, None);
                }
                Err(e) => names_file_and_line(&e.to_string(), path)?,
            }
            Ok(())
        })
        .unwrap();
    tally.print("suite files");
}

#[test]
fn mutated_project_files_never_panic_and_every_error_names_the_file_and_line() {
    // The shipped example (five templates, read where it lies: parsing only reads) and a small one like the README's.
    let example = root().join("examples/templates/layerbench.toml");
    let small = "app = \"../../sample-go-app\"\nscenarios = [\"touch-only\"]\nrepetitions = 3\nbuilders = [\"buildkit\", \"legacy\"]\n\n\
                 [[template]]\nname = \"good\"\ndockerfile = \"good.Dockerfile\"\ntarget = \"final\"\nbuild_args = { V = \"1\" }\n\
                 probe = { command = [\"selftest\"] }\n\n[[template.expect]]\nmax_image_size = \"30MB\"\nbinary = \"static\"\n\
                 user = \"non-root\"\nprobe = true\nmax_layers = 3\n\n[[template.expect]]\nscenario = \"edit-go-source\"\n\
                 step = \"edit-handler\"\nbuilder = \"buildkit\"\ncached = [\"RUN go mod download\"]\nexecuted = [\"COPY . .\", \"line:9\"]\n\
                 max_proxy_requests = 0\nmax_rebuild_seconds = 60.0\nmax_slowdown = 1.15\n";
    let seeds = [std::fs::read_to_string(&example).unwrap(), small.to_string()];
    Project::parse(&seeds[1], &example).expect("the small seed is a good project file");
    let tally = Tally::default();
    runner()
        .run(&toml_case(), |(seed, edits, mutations)| {
            let text = apply(&edit_toml(&seeds[seed.index(seeds.len())], &edits), &mutations);
            let parsed = Project::parse(&text, &example);
            tally.count(&parsed);
            match parsed {
                Ok(project) => {
                    let _ = (project.cells(), project.expectations());
                }
                Err(e) => names_file_and_line(&e.to_string(), &example)?,
            }
            Ok(())
        })
        .unwrap();
    tally.print("project files");
}

// ---------------------------------------------------------------- Dockerfiles

const DOCKERFILE_TOKENS: &[&str] = &[
    "FROM ", "FROM scratch", " AS ", " as ", "RUN ", "COPY ", "COPY --from=build ", "ADD ", "WORKDIR ", "ARG GOPROXY", "ARG ",
    "USER ", "ENTRYPOINT [\"/app\"]", "\\\n", "\\", "\n", "#", "# syntax=docker/dockerfile:1\n", "--mount=type=cache,target=/x ",
    "--link ", "<<EOF\n", "go build", "go", "&&", ";", "|", "=", "\"", "'", "\t", "\r", "é", "\u{0}", "🦀", "$GOPROXY",
];

#[test]
fn mutated_dockerfiles_never_panic_and_map_both_builders_step_names() {
    let mut seeds = files("sample-go-app/dockerfiles", ".Dockerfile");
    seeds.extend(files("tests/fixtures/tiny-app/dockerfiles", ".Dockerfile"));
    seeds.extend(files("examples/templates", ".Dockerfile"));
    let strategy = (any::<Index>(), mutations(DOCKERFILE_TOKENS), prop::collection::vec(insertion(DOCKERFILE_TOKENS), 0..4));
    runner()
        .run(&strategy, |(seed, mutations, junk)| {
            let text = apply(&seeds[seed.index(seeds.len())].1, &mutations);
            let model = DockerfileModel::parse(&text);
            let _ = (model.buildkit_only_feature(), model.stages_running_go_without_goproxy());
            let n = model.instructions.len();
            let mut legacy = Vec::new();
            let mut buildkit = Vec::new();
            for (k, ins) in model.instructions.iter().enumerate() {
                prop_assert!(ins.line >= 1 && ins.line <= text.lines().count().max(1), "line {} of {n}", ins.line);
                prop_assert_eq!(model.position(ins).map(|p| p <= k), Some(true));
                let _ = (model.legacy_step(k), model.legacy_step(k + 2), model.buildkit_step(&ins.stage, k), model.buildkit_step("stage-0", k + 1));
                legacy.push(report(format!("Step {}/{n} : {}", k + 1, ins.text), k));
                buildkit.push(report(format!("[{} {}/{n}] {}", ins.stage, k, ins.text), k));
            }
            for (k, j) in junk.iter().enumerate() {
                legacy.push(report(format!("Step {j}"), k));
                buildkit.push(report(format!("[{j}] {j}"), k));
                buildkit.push(report(j.clone(), k));
            }
            let _ = layerbench::run::layer_records(&model, Builder::Legacy, &legacy, 0);
            let _ = layerbench::run::layer_records(&model, Builder::Buildkit, &buildkit, u64::MAX);
            Ok(())
        })
        .unwrap();
}

fn report(name: String, k: usize) -> StepReport {
    let k = k as u64;
    StepReport {
        name,
        cached: k.is_multiple_of(2),
        started_unix_ms: (!k.is_multiple_of(3)).then_some(k * 10),
        completed_unix_ms: (!k.is_multiple_of(5)).then_some(k.wrapping_mul(7)),
        error: (k == 4).then(|| "boom".to_string()),
    }
}

// ---------------------------------------------------------------- .dockerignore

const IGNORE_TOKENS: &[&str] = &[
    "!", "*", "**", "**/", "?", "[", "]", "[a-", "[^", "[]", "\\", "..", "../", "/", "./", "^", "$", "(", ")", "|", "{", "}", "+",
    ".", "#", " ", "\n", "\r\n", "\u{feff}", "é", "\u{0}", "🦀", ".git", "Dockerfile", "*.go", "!main.go", "a{1000}", "x{2,}",
];

#[test]
fn mutated_dockerignore_files_never_panic_and_every_error_names_the_file_and_line() {
    let mut seeds: Vec<(PathBuf, String)> = [
        "sample-go-app/.dockerignore",
        "sample-go-app/dockerfiles/naive-no-dockerignore.Dockerfile.dockerignore",
        "tests/fixtures/tiny-app/.dockerignore",
        "tests/fixtures/other-app/.dockerignore",
    ]
    .iter()
    .map(|p| (root().join(p), std::fs::read_to_string(root().join(p)).unwrap()))
    .collect();
    seeds.extend(files("examples/templates", ".dockerignore"));
    let paths = ["main.go", "a/b/c.go", ".git/HEAD", "Dockerfile", "dockerfiles/x.Dockerfile", "é/🦀", "../x", "./a", "", "a//b"];
    let tally = Tally::default();
    runner()
        .run(&(any::<Index>(), mutations(IGNORE_TOKENS)), |(seed, mutations)| {
            let (path, text) = &seeds[seed.index(seeds.len())];
            let text = apply(text, &mutations);
            let parsed = IgnoreRules::parse(&text, path);
            tally.count(&parsed);
            for (dialect, parsed) in [(IgnoreDialect::Docker20, parsed), (IgnoreDialect::Docker23, IgnoreRules::parse_in(IgnoreDialect::Docker23, &text, path))] {
                match parsed {
                    Ok(mut rules) => {
                        for p in paths {
                            let _ = (rules.is_excluded(p), rules.may_re_include_below(p), rules.sync_enters(p), rules.judge_path(p));
                        }
                        if let Err(e) = rules.keep("dockerfiles/x.Dockerfile") {
                            prop_assert!(e.to_string().contains(&path.display().to_string()), "{dialect:?}: {e}");
                        }
                    }
                    Err(e) => names_file_and_line(&e.to_string(), path)?,
                }
            }
            Ok(())
        })
        .unwrap();
    tally.print(".dockerignore files");
}

// ---------------------------------------------------------------- build streams of both builders

const JSON_TOKENS: &[&str] = &[
    "\"", "{", "}", "[", "]", ":", ",", "null", "-1", "1e400", "18446744073709551616", "\\", "\\u0000", "\\ud800", "\n",
    "\"Step 1/2 : FROM x\"", "\"[build 1/1] RUN x\"", "\"[internal] x\"", "\" ---> Using cache\\n\"", "\"Successfully built x\"",
    "\"type\":\"vertex\"", "\"type\":\"text\"", "\"type\":\"error\"", "é", "🦀", "\u{0}", "NaN",
];

#[test]
fn mutated_build_streams_of_both_builders_never_panic_and_every_error_names_the_file_and_line() {
    let seeds = files("tests/fixtures/streams", ".jsonl");
    let model = DockerfileModel::parse(&std::fs::read_to_string(root().join("tests/fixtures/tiny-app/dockerfiles/layered.Dockerfile")).unwrap());
    let strategy = (any::<Index>(), any::<Index>(), edits(JSON_TOKENS), mutations(JSON_TOKENS));
    let tally = Tally::default();
    runner()
        .run(&strategy, |(seed, line, edits, mutations)| {
            let (path, text) = &seeds[seed.index(seeds.len())];
            // Structured edits of one line's item, then edits of the whole text.
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let at = line.index(lines.len());
            lines[at] = edit_json(&lines[at], &edits, false);
            let text = apply(&(lines.join("\n") + "\n"), &mutations);
            let parsed = BuildStream::from_recording(&text, path);
            tally.count(&parsed);
            match parsed {
                Ok(stream) => {
                    let _ = stream.failure().cloned();
                    let steps = stream.finish();
                    let start = steps.iter().filter_map(|s| s.started_unix_ms).min().unwrap_or(0);
                    for builder in [Builder::Buildkit, Builder::Legacy] {
                        let _ = layerbench::run::layer_records(&model, builder, &steps, start);
                    }
                }
                Err(e) => names_file_and_line(&e.to_string(), path)?,
            }
            Ok(())
        })
        .unwrap();
    tally.print("build streams");
}

// ---------------------------------------------------------------- results files

/// The fixture results file, and a small one made of its first records (faster, so more of the cases get past parsing).
fn results_seeds() -> &'static [(PathBuf, String); 2] {
    static SEEDS: OnceLock<[(PathBuf, String); 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let path = root().join("tests/fixtures/report/results.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut small: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(records) = small.get_mut("records").and_then(serde_json::Value::as_array_mut) {
            records.truncate(6);
        }
        [(path.clone(), text), (path.with_file_name("small-results.json"), serde_json::to_string_pretty(&small).unwrap())]
    })
}

#[test]
fn mutated_results_files_never_panic_and_every_error_names_the_file_and_line() {
    let seeds = results_seeds();
    let strategy = (0..4usize, edits(JSON_TOKENS), mutations(JSON_TOKENS));
    let tally = Tally::default();
    runner()
        .run(&strategy, |(seed, edits, mutations)| {
            // Three cases in four start from the small file.
            let (path, text) = &seeds[usize::from(seed != 0)];
            let text = apply(&edit_json(text, &edits, true), &mutations);
            let parsed = Results::parse(&text, path);
            tally.count(&parsed);
            match parsed {
                Ok(results) => {
                    // What reads a results file alone: verdicts, comparison, the summary and the charts' data.
                    let _ = layerbench::analysis::verdicts::verdicts(&results);
                    let _ = layerbench::analysis::compare::compare(&results, &results);
                    let _ = layerbench::report::csv::summary(&results);
                    let _ = layerbench::report::charts::charts(&results);
                }
                Err(e) => names_file_and_line(&e.to_string(), path)?,
            }
            Ok(())
        })
        .unwrap();
    tally.print("results files");
}
