//! Judging a project's expectations against finished results: pass, fail or inconclusive, with the measured values and why a step missed (a pure function; nothing here talks to Docker).

use serde::Serialize;

/// How an expectation came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The measurements cannot settle it (a time expectation inside the noise, too few repetitions).
    Inconclusive,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// One expectation judged over the builds it covers (one template × scenario step × builder).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub template: String,
    /// The scenario, or `None` for an expectation that holds after every build.
    pub scenario: Option<String>,
    /// The scenario step, or `None` for every step the expectation covers.
    pub step: Option<String>,
    pub builder: Option<crate::results::Builder>,
    /// The expectation as written in the project file: `cached = "RUN go mod download"`, `max_image_size = "30MB"`.
    pub expectation: String,
    /// What was expected, in words: `cached in every build`, `at most 30.0 MB`.
    pub expected: String,
    /// What was measured: `executed in 3 of 3 builds`, `31.2 MB`.
    pub measured: String,
    pub outcome: Outcome,
    /// Why it failed or is inconclusive: why the step missed, the build's error, the n and spread that would settle a time.
    pub reason: Option<String>,
    /// The template's Dockerfile (as the project file names it) and the line the expectation points at, for annotations.
    pub dockerfile: String,
    pub line: Option<usize>,
    /// The engine whose builds it was judged on (`check --matrix`); absent when judged on every build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The network profile of the builds it was judged on; absent for `loopback`, the unshaped proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::dockerfile::{DockerfileModel, Instruction};
use crate::results::{BuildRecord, Builder, LayerRecord, Results, LOOPBACK_NETWORK};

mod checks;
mod identity;

pub use checks::why;
pub use identity::{TemplateIdentity, TemplateMatch};
use checks::judge_group;


/// One `[[template.expect]]` table of a project file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The scenario whose rebuilds it covers; absent: it holds after every build of the template.
    #[serde(default)]
    pub scenario: Option<String>,
    /// One step of the scenario (or `baseline`); absent: every rebuild of the scenario.
    #[serde(default)]
    pub step: Option<String>,
    /// One builder only; absent: every builder of the project.
    #[serde(default)]
    pub builder: Option<Builder>,
    /// Step patterns that must come from the cache.
    #[serde(default)]
    pub cached: Vec<String>,
    /// Step patterns that must execute.
    #[serde(default)]
    pub executed: Vec<String>,
    /// Every step (other than `FROM`) comes from the cache.
    #[serde(default)]
    pub all_cached: Option<bool>,
    #[serde(default)]
    pub max_proxy_requests: Option<usize>,
    /// `30MB`, `1.5 GiB`, `800kB` or a number of bytes.
    #[serde(default)]
    pub max_image_size: Option<ByteSize>,
    #[serde(default)]
    pub max_layers: Option<usize>,
    #[serde(default)]
    pub binary: Option<Linkage>,
    /// `non-root`, `root`, or the exact `USER` the image must have.
    #[serde(default)]
    pub user: Option<String>,
    /// The template's probe passes.
    #[serde(default)]
    pub probe: Option<bool>,
    /// The build's wall time, in seconds (a time expectation).
    #[serde(default)]
    pub max_rebuild_seconds: Option<f64>,
    /// The build's wall time over the same build in the baseline results (a time expectation).
    #[serde(default)]
    pub max_slowdown: Option<f64>,
}

impl Expectation {
    /// Whether it judges wall times (its cells need repetitions).
    pub fn needs_repetitions(&self) -> bool {
        self.max_rebuild_seconds.is_some() || self.max_slowdown.is_some()
    }

    /// Every step pattern, with the key it sits under.
    pub fn patterns(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.cached.iter().map(|p| ("cached", p.as_str())).chain(self.executed.iter().map(|p| ("executed", p.as_str())))
    }

    /// Whether it checks anything at all: nothing but which builds it covers is set.
    pub fn is_empty(&self) -> bool {
        *self == self.covering()
    }

    /// Which builds it covers, and nothing to check.
    fn covering(&self) -> Expectation {
        Expectation { scenario: self.scenario.clone(), step: self.step.clone(), builder: self.builder, ..Expectation::default() }
    }

    /// `(everything but the times, the times alone)`: times are judged per scenario step, never pooled.
    fn split_times(&self) -> (Expectation, Expectation) {
        let untimed = Expectation { max_rebuild_seconds: None, max_slowdown: None, ..self.clone() };
        let timed = Expectation { max_rebuild_seconds: self.max_rebuild_seconds, max_slowdown: self.max_slowdown, ..self.covering() };
        (untimed, timed)
    }
}

/// A binary's linkage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Linkage {
    Static,
    Dynamic,
}

impl Linkage {
    pub fn name(self) -> &'static str {
        match self {
            Linkage::Static => "static",
            Linkage::Dynamic => "dynamic",
        }
    }
}

/// A size in bytes, written `30MB` (decimal units), `1.5GiB` (binary units) or as a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ByteSize(pub u64);

impl std::fmt::Display for ByteSize {
    /// In the largest decimal unit that keeps a whole number where possible: `30MB`, `1500kB`, `123B`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            b if b >= 1_000_000_000 && b % 1_000_000_000 == 0 => write!(f, "{}GB", b / 1_000_000_000),
            b if b >= 1_000_000 && b % 1_000_000 == 0 => write!(f, "{}MB", b / 1_000_000),
            b if b >= 1_000 && b % 1_000 == 0 => write!(f, "{}kB", b / 1_000),
            b => write!(f, "{b}B"),
        }
    }
}

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (write 30MB, 1.5GiB, 800kB or a number of bytes)"))?;
        let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("`{text}`: unknown unit `{other}` (use B, kB, MB, GB, KiB, MiB or GiB)")),
        };
        Ok(ByteSize((number * factor).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(ByteSize(b)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A step pattern: an instruction prefix, a glob (`*`, `?`), or `line:N`.
#[derive(Debug, Clone, PartialEq)]
pub enum StepPattern {
    Line(usize),
    Glob(String),
    Prefix(String),
}

impl StepPattern {
    pub fn parse(text: &str) -> Result<StepPattern, String> {
        let t = text.trim();
        if let Some(n) = t.strip_prefix("line:") {
            return n.trim().parse().map(StepPattern::Line).map_err(|_| format!("`{text}`: `line:` takes a line number"));
        }
        if t.is_empty() {
            return Err("an empty step pattern".to_string());
        }
        Ok(if t.contains(['*', '?']) { StepPattern::Glob(normalize(t)) } else { StepPattern::Prefix(normalize(t)) })
    }

    fn matches(&self, instruction: &str, line: Option<usize>) -> bool {
        match self {
            StepPattern::Line(n) => line == Some(*n),
            StepPattern::Prefix(p) => normalize(instruction).starts_with(p.as_str()),
            StepPattern::Glob(g) => glob_match(g.as_bytes(), normalize(instruction).as_bytes()),
        }
    }

    pub fn matches_instruction(&self, ins: &Instruction) -> bool {
        self.matches(&ins.text, Some(ins.line))
    }

    pub fn matches_layer(&self, layer: &LayerRecord) -> bool {
        !layer.is_base_image() && self.matches(&layer.instruction, layer.line)
    }
}

/// Runs of whitespace as one space: the pattern and the instruction compare as words.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `*` matches any run of characters, `?` one character; the whole text must match.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A template and what is expected of it, as judging needs them.
#[derive(Debug, Clone)]
pub struct TemplateExpectations {
    pub name: String,
    /// The Dockerfile as the project names it (for messages and annotations).
    pub dockerfile: String,
    /// The Dockerfile's instructions, for the lines expectations point at.
    pub model: DockerfileModel,
    pub expectations: Vec<Expectation>,
    /// The steps of every scenario an expectation names, by scenario name.
    pub scenario_steps: BTreeMap<String, Vec<String>>,
    /// The builders of the project.
    pub builders: Vec<Builder>,
    /// The project's `scenarios`: the builds an expectation without `scenario` covers; none: the baseline builds.
    pub every_build_scenarios: Vec<String>,
    /// What the template's builds in a results file must have been built from.
    pub identity: TemplateIdentity,
}

/// The step name of every cell's first build.
const BASELINE_STEP: &str = "baseline";

/// The builds an expectation covers for one builder, one network profile and, for a scenario, one step.
#[derive(Clone)]
struct Group<'a> {
    scenario: Option<String>,
    step: Option<String>,
    builder: Builder,
    network: String,
    records: Vec<&'a BuildRecord>,
}

/// Judges every expectation of every template against `results` (and, for
/// `max_slowdown` and lost builds, against `baseline`). Pure: reads results only.
pub fn judge(templates: &[TemplateExpectations], results: &Results, baseline: Option<&Results>) -> Vec<Judgement> {
    let mut out = Vec::new();
    for t in templates {
        for e in &t.expectations {
            for group in groups(t, e, results) {
                if group.step.is_some() || !e.needs_repetitions() {
                    judge_group(t, e, &group, baseline, &mut out);
                    continue;
                }
                // Every build of several steps: times of a cold baseline and of a rebuild are never one sample.
                let (untimed, timed) = e.split_times();
                if !untimed.is_empty() {
                    judge_group(t, &untimed, &group, baseline, &mut out);
                }
                // The rebuilds of the project's scenarios; the baselines only when it names none.
                for one in group.per_step().into_iter().filter(|g| t.every_build_scenarios.is_empty() || g.step.as_deref() != Some(BASELINE_STEP)) {
                    judge_group(t, &timed, &one, baseline, &mut out);
                }
            }
        }
        if let Some(before) = baseline {
            out.extend(lost_builds(t, results, before));
        }
    }
    out
}

/// Judges every expectation on every engine of `results` (`check --matrix`): each engine's builds alone, as
/// [`judge`] judges a run on that engine, against the same engine's builds in `baseline` when it names that engine
/// (else against all of it). Each judgement names its engine; an expectation's judgements on the engines are adjacent,
/// in the engines' order.
pub fn judge_per_engine(templates: &[TemplateExpectations], results: &Results, baseline: Option<&Results>) -> Vec<Judgement> {
    let mut all: Vec<Judgement> = Vec::new();
    for name in results.record_engines() {
        let own_baseline = baseline.map(|b| if b.records.iter().any(|r| r.engine == name) { b.of_engine(&name) } else { b.clone() });
        let shown = crate::analysis::engines::shown_name(&name);
        all.extend(judge(templates, &results.of_engine(&name), own_baseline.as_ref()).into_iter().map(|j| Judgement { engine: Some(shown.clone()), ..j }));
    }
    type Key = (String, Option<String>, Option<String>, Option<Builder>, Option<String>, String);
    let key = |j: &Judgement| -> Key { (j.template.clone(), j.scenario.clone(), j.step.clone(), j.builder, j.network.clone(), j.expectation.clone()) };
    let mut order: Vec<Key> = Vec::new();
    for j in &all {
        if !order.contains(&key(j)) {
            order.push(key(j));
        }
    }
    all.sort_by_key(|j| order.iter().position(|k| *k == key(j)));
    all
}

fn groups<'a>(t: &TemplateExpectations, e: &Expectation, results: &'a Results) -> Vec<Group<'a>> {
    let builders: Vec<Builder> = match e.builder {
        Some(b) => vec![b],
        None => t.builders.clone(),
    };
    let ours = t.builds(results);
    // (scenario, step): one scenario's steps, or every build the project's scenarios cover.
    let scopes: Vec<(Option<String>, Option<String>)> = match &e.scenario {
        None => vec![(None, None)],
        Some(scenario) => {
            let steps = match &e.step {
                Some(s) => vec![s.clone()],
                None => t.scenario_steps.get(scenario).cloned().unwrap_or_default(),
            };
            steps.into_iter().map(|step| (Some(scenario.clone()), Some(step))).collect()
        }
    };
    let mut groups = Vec::new();
    for builder in builders {
        for (scenario, step) in &scopes {
            let records: Vec<&BuildRecord> = ours
                .iter()
                .copied()
                .filter(|r| r.builder == builder)
                .filter(|r| match (scenario, step) {
                    (Some(sc), Some(st)) => &r.scenario == sc && &r.step == st,
                    _ => t.covers(r),
                })
                .collect();
            // A project scenario with no build at all is said, not skipped.
            if scenario.is_none() {
                for absent in t.every_build_scenarios.iter().filter(|s| !records.iter().any(|r| &&r.scenario == s)) {
                    let network = LOOPBACK_NETWORK.to_string();
                    groups.push(Group { scenario: Some(absent.clone()), step: None, builder, network, records: Vec::new() });
                }
            }
            for (network, records) in by_network(records) {
                groups.push(Group { scenario: scenario.clone(), step: step.clone(), builder, network, records });
            }
        }
    }
    groups
}

/// The records split by network profile, loopback first, then by name: builds over different networks are never
/// judged together. One loopback group with no records when there are none.
fn by_network(records: Vec<&BuildRecord>) -> Vec<(String, Vec<&BuildRecord>)> {
    let mut names: Vec<String> = records.iter().map(|r| r.network.clone()).collect();
    if names.is_empty() {
        names.push(LOOPBACK_NETWORK.to_string());
    }
    names.sort_by_key(|n| (n != LOOPBACK_NETWORK, n.clone()));
    names.dedup();
    names.into_iter().map(|n| {
        let of: Vec<&BuildRecord> = records.iter().copied().filter(|r| r.network == n).collect();
        (n, of)
    }).collect()
}

impl<'a> Group<'a> {
    /// The group split by scenario step, in the order the records have them; itself when it has no records.
    fn per_step(&self) -> Vec<Group<'a>> {
        let mut steps: Vec<(&str, &str)> = Vec::new();
        for r in &self.records {
            if !steps.contains(&(r.scenario.as_str(), r.step.as_str())) {
                steps.push((&r.scenario, &r.step));
            }
        }
        if steps.is_empty() {
            return vec![self.clone()];
        }
        steps
            .into_iter()
            .map(|(scenario, step)| Group {
                scenario: Some(scenario.to_string()),
                step: Some(step.to_string()),
                records: self.records.iter().copied().filter(|r| r.scenario == scenario && r.step == step).collect(),
                ..self.clone()
            })
            .collect()
    }
}

/// Builds that succeeded in the baseline and now fail or are missing: regressions, whatever the expectations say.
fn lost_builds(t: &TemplateExpectations, results: &Results, before: &Results) -> Vec<Judgement> {
    let mut keys: Vec<(String, String, Builder, String)> = Vec::new();
    for r in before.records.iter().filter(|r| r.variant == t.name && r.outcome.is_ok()) {
        let k = (r.scenario.clone(), r.step.clone(), r.builder, r.network.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = Vec::new();
    if matches!(t.matches(results), TemplateMatch::Differs(_)) {
        // Builds of another template under this name: nothing of it was lost, nor kept (every expectation says so).
        return Vec::new();
    }
    let ours = t.builds(results);
    for (scenario, step, builder, network) in keys {
        let now: Vec<&BuildRecord> = ours.iter().copied().filter(|r| r.scenario == scenario && r.step == step && r.builder == builder && r.network == network).collect();
        if now.iter().any(|r| r.outcome.is_ok()) {
            continue;
        }
        let in_run = results.options.scenarios.contains(&scenario) && results.options.builders.contains(&builder) && (network == LOOPBACK_NETWORK || results.records.iter().any(|r| r.network == network));
        let (measured, reason) = match now.first() {
            Some(r) => ("build failed".to_string(), r.error_with_output().unwrap_or_else(|| "(no message)".into())),
            None if in_run => ("missing".to_string(), "built in the baseline, but this run recorded no build of it".to_string()),
            // A cell this run was not asked to build is not lost.
            None => continue,
        };
        out.push(Judgement {
            template: t.name.clone(),
            scenario: Some(scenario),
            step: Some(step),
            builder: Some(builder),
            expectation: "builds as in --baseline".into(),
            expected: "built".into(),
            measured,
            outcome: Outcome::Fail,
            reason: Some(reason),
            dockerfile: t.dockerfile.clone(),
            line: None,
            engine: None,
            network: (network != LOOPBACK_NETWORK).then_some(network),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{record_with, results_with, ImageRecord, MissKind, MissReason, TemplateRecord};

    const DOCKERFILE: &str = "FROM golang:1.23 AS build\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /app .\nFROM scratch\nCOPY --from=build /app /app\nUSER 65532\n";

    fn template(expectations: Vec<Expectation>) -> TemplateExpectations {
        TemplateExpectations {
            name: "service".into(),
            dockerfile: "build/service.Dockerfile".into(),
            model: DockerfileModel::parse(DOCKERFILE),
            expectations,
            scenario_steps: BTreeMap::from([("edit-go-source".to_string(), vec!["edit-handler".to_string()])]),
            builders: vec![Builder::Buildkit],
            every_build_scenarios: vec!["edit-go-source".to_string()],
            identity: TemplateIdentity { dockerfile_sha256: crate::results::content_digest(DOCKERFILE.as_bytes()), target: None, build_args: BTreeMap::new() },
        }
    }

    /// An edit-go-source rebuild: `download_cached` says whether `RUN go mod download` came from the cache.
    fn rebuild(download_cached: bool, seconds: f64, repetition: u32) -> BuildRecord {
        let mut r = record_with(
            "service",
            "edit-go-source",
            "edit-handler",
            seconds,
            &[("COPY go.mod go.sum ./", download_cached, 0.0), ("RUN go mod download", download_cached, 1.0), ("COPY . .", false, 0.1), ("RUN go build -o /app .", false, 5.0)],
            if download_cached { 0 } else { 12 },
        );
        r.repetition = repetition;
        for (i, l) in r.layers.iter_mut().enumerate() {
            l.line = Some(i + 3);
            if !l.cached {
                l.miss_reason = Some(if i == 0 || (download_cached && i == 2) {
                    MissReason { kind: MissKind::Files, detail: if i == 0 { "go.mod (content)".into() } else { "main.go (content)".into() }, line: Some(3) }
                } else {
                    MissReason { kind: MissKind::Follows, detail: "follows line 3".into(), line: Some(3) }
                });
            }
        }
        r.image = Some(ImageRecord { id: "sha256:1".into(), size_bytes: 12_000_000, layer_count: 2, user: "65532".into() });
        r
    }

    fn expect(f: impl FnOnce(&mut Expectation)) -> Expectation {
        let mut e = Expectation { scenario: Some("edit-go-source".into()), ..Default::default() };
        f(&mut e);
        e
    }

    fn outcomes(j: &[Judgement]) -> Vec<(String, Outcome)> {
        j.iter().map(|j| (j.expectation.clone(), j.outcome)).collect()
    }

    #[test]
    fn a_matrix_judges_every_expectation_on_each_engine_and_names_it() {
        let t = template(vec![expect(|e| {
            e.cached = vec!["RUN go mod download".into()];
            e.max_proxy_requests = Some(0);
        })]);
        let on = |engine: &str, cached: bool| {
            let mut r = rebuild(cached, 6.0, 1);
            r.engine = engine.into();
            r
        };
        let mut results = results_with(vec![on("old", true), on("modern", false)]);
        results.options.matrix = true;
        let j = judge_per_engine(std::slice::from_ref(&t), &results, None);
        let seen: Vec<(&str, &str, Outcome)> = j.iter().map(|j| (j.engine.as_deref().unwrap_or(""), j.expectation.as_str(), j.outcome)).collect();
        assert_eq!(
            seen,
            [
                ("old", "cached = \"RUN go mod download\"", Outcome::Pass),
                ("modern", "cached = \"RUN go mod download\"", Outcome::Fail),
                ("old", "max_proxy_requests = 0", Outcome::Pass),
                ("modern", "max_proxy_requests = 0", Outcome::Fail),
            ]
        );
        assert_eq!(j[0].measured, "cached in 1 of 1 builds", "each engine's builds alone");
        assert!(judge(&[t], &results, None).iter().all(|j| j.engine.is_none()));
    }

    #[test]
    fn a_kept_property_passes_with_its_measured_value() {
        let t = template(vec![expect(|e| {
            e.cached = vec!["RUN go mod download".into()];
            e.executed = vec!["COPY . .".into()];
            e.max_proxy_requests = Some(0);
            e.max_image_size = Some(ByteSize(30_000_000));
            e.user = Some("non-root".into());
        })]);
        let results = results_with(vec![rebuild(true, 6.0, 1)]);
        let j = judge(&[t], &results, None);
        assert!(j.iter().all(|j| j.outcome == Outcome::Pass), "{j:#?}");
        assert_eq!(j[0].measured, "cached in 1 of 1 builds");
        assert_eq!(j[0].line, Some(4), "the line of the matched step");
        assert_eq!(j[3].measured, "12.0 MB");
    }

    #[test]
    fn a_lost_cache_hit_fails_and_says_why_the_step_missed() {
        let t = template(vec![expect(|e| {
            e.cached = vec!["RUN go mod download".into()];
            e.max_proxy_requests = Some(0);
        })]);
        let results = results_with(vec![rebuild(false, 9.0, 1)]);
        let j = judge(&[t], &results, None);
        assert_eq!(outcomes(&j), [("cached = \"RUN go mod download\"".to_string(), Outcome::Fail), ("max_proxy_requests = 0".to_string(), Outcome::Fail)]);
        assert_eq!(j[0].measured, "executed in 1 of 1 builds");
        let reason = j[0].reason.as_deref().unwrap();
        assert!(reason.ends_with("follows: follows line 3, because files: go.mod (content)"), "{reason}");
        assert_eq!(j[1].measured, "12");
    }

    #[test]
    fn image_properties_fail_with_what_was_measured() {
        let t = template(vec![Expectation {
            max_image_size: Some(ByteSize(10_000_000)),
            user: Some("non-root".into()),
            max_layers: Some(1),
            binary: Some(Linkage::Static),
            ..Default::default()
        }]);
        let mut r = rebuild(true, 6.0, 1);
        r.image.as_mut().unwrap().user = String::new();
        let j = judge(&[t], &results_with(vec![r]), None);
        assert!(j.iter().all(|j| j.outcome == Outcome::Fail), "{j:#?}");
        let by = |name: &str| j.iter().find(|j| j.expectation.starts_with(name)).unwrap();
        assert_eq!(by("max_image_size").measured, "12.0 MB");
        assert_eq!(by("user").measured, "no USER (root)");
        assert_eq!(by("user").line, Some(9), "points at the final stage's USER");
        assert_eq!(by("max_layers").measured, "2");
        assert_eq!(by("binary").measured, "no binary inspected");
    }

    #[test]
    fn a_missing_cell_and_a_failed_build_fail_every_check() {
        let t = template(vec![expect(|e| e.all_cached = Some(true))]);
        let j = judge(std::slice::from_ref(&t), &results_with(vec![]), None);
        assert_eq!((j[0].outcome, j[0].measured.as_str()), (Outcome::Fail, "no build recorded"));
        let mut failed = rebuild(true, 1.0, 1);
        failed.outcome = crate::results::Outcome::Failed;
        failed.error = Some("at `RUN go build -o /app .`: exit code 1".into());
        let j = judge(&[t], &results_with(vec![failed]), None);
        assert_eq!(j[0].outcome, Outcome::Fail);
        assert!(j[0].reason.as_deref().unwrap().contains("exit code 1"));
    }

    #[test]
    fn a_pattern_that_matches_no_built_step_fails() {
        let t = template(vec![expect(|e| e.cached = vec!["RUN go vet".into()])]);
        let j = judge(&[t], &results_with(vec![rebuild(true, 6.0, 1)]), None);
        assert_eq!(j[0].outcome, Outcome::Fail);
        assert!(j[0].measured.starts_with("not built"), "{j:#?}");
    }

    fn timed(t: &TemplateExpectations, before: &[f64], after: &[f64]) -> Judgement {
        let records = |times: &[f64]| results_with(times.iter().enumerate().map(|(i, s)| rebuild(true, *s, i as u32 + 1)).collect());
        let (a, b) = (records(before), records(after));
        judge(std::slice::from_ref(t), &b, Some(&a)).remove(0)
    }

    #[test]
    fn a_slowdown_passes_fails_or_is_inconclusive_by_its_interval() {
        let t = template(vec![expect(|e| e.max_slowdown = Some(1.15))]);
        let same = timed(&t, &[10.0, 10.1, 9.9, 10.05, 9.95], &[10.0, 10.2, 9.8, 10.1, 9.9]);
        assert_eq!(same.outcome, Outcome::Pass, "{same:#?}");
        let slower = timed(&t, &[10.0, 10.1, 9.9, 10.05], &[15.0, 15.2, 14.9, 15.1]);
        assert_eq!(slower.outcome, Outcome::Fail, "{slower:#?}");
        // 13% slower with ±10% noise: neither a pass nor a failure.
        let noisy = timed(&t, &[10.0, 11.0, 9.0, 10.5, 9.5], &[11.3, 12.4, 10.2, 11.8, 10.8]);
        assert_eq!(noisy.outcome, Outcome::Inconclusive, "{noisy:#?}");
        let reason = noisy.reason.as_deref().unwrap();
        assert!(reason.contains("inside the noise") && reason.contains("repetitions"), "{reason}");
        let few = timed(&t, &[10.0, 10.0, 10.1], &[30.0, 30.0, 30.2]);
        assert_eq!(few.outcome, Outcome::Inconclusive, "3 against 3 never fails: no rank test reaches 95%: {few:#?}");
        assert!(few.reason.as_deref().unwrap().contains("needs ≥ 4 per side"), "{few:#?}");
        let no_baseline = judge(std::slice::from_ref(&t), &results_with(vec![rebuild(true, 1.0, 1)]), None);
        assert_eq!(no_baseline[0].outcome, Outcome::Inconclusive);
    }

    #[test]
    fn a_rebuild_time_limit_is_judged_by_the_exact_interval_of_its_centre() {
        let t = template(vec![expect(|e| e.max_rebuild_seconds = Some(8.0))]);
        let results = |times: &[f64]| results_with(times.iter().enumerate().map(|(i, s)| rebuild(true, *s, i as u32 + 1)).collect());
        let j = |times: &[f64]| judge(std::slice::from_ref(&t), &results(times), None).remove(0);
        assert_eq!(j(&[5.0, 5.1, 4.9, 5.2, 5.0, 4.8]).outcome, Outcome::Pass);
        assert_eq!(j(&[12.0, 12.5, 11.8, 12.1, 12.2, 11.9]).outcome, Outcome::Fail);
        assert_eq!(j(&[7.0, 9.0, 8.1, 7.5, 8.4, 7.9]).outcome, Outcome::Inconclusive);
        // Five times far above the limit still cannot fail it: no exact interval reaches 95% from five.
        let five = j(&[20.0, 21.0, 20.5, 20.2, 20.8]);
        assert_eq!(five.outcome, Outcome::Inconclusive, "{five:#?}");
        assert!(five.reason.as_deref().unwrap().contains("needs ≥ 6 repetitions"), "{five:#?}");
    }

    fn recorded(t: &TemplateExpectations, records: Vec<BuildRecord>, digest: Option<&str>) -> Results {
        let mut r = results_with(records);
        r.options.templates = vec![TemplateRecord {
            name: t.name.clone(),
            dockerfile: "dockerfiles/service.Dockerfile".into(),
            dockerfile_sha256: digest.map(String::from),
            target: t.identity.target.clone(),
            build_args: t.identity.build_args.clone(),
            probe: None,
            inspect_binary: None,
        }];
        r
    }

    #[test]
    fn builds_of_another_dockerfile_under_the_same_name_are_not_judged() {
        let t = template(vec![expect(|e| e.user = Some("non-root".into()))]);
        let ours = t.identity.dockerfile_sha256.clone();
        assert_eq!(t.matches(&recorded(&t, vec![rebuild(true, 1.0, 1)], Some(&ours))), TemplateMatch::Same);
        let j = judge(std::slice::from_ref(&t), &recorded(&t, vec![rebuild(true, 1.0, 1)], Some(&ours)), None);
        assert_eq!(j[0].outcome, Outcome::Pass, "{j:#?}");
        let other = recorded(&t, vec![rebuild(true, 1.0, 1)], Some("sha256:0123456789abcdef"));
        let TemplateMatch::Differs(why) = t.matches(&other) else { panic!("{:?}", t.matches(&other)) };
        assert!(why.contains("dockerfiles/service.Dockerfile") && why.contains("sha256:0123456789ab ") && why.contains("had other content"), "{why}");
        let j = judge(std::slice::from_ref(&t), &other, None);
        assert_eq!((j[0].outcome, j[0].measured.as_str()), (Outcome::Fail, "no build recorded"), "{j:#?}");
        let mut targeted = recorded(&t, vec![rebuild(true, 1.0, 1)], Some(&ours));
        targeted.options.templates[0].target = Some("build".into());
        let TemplateMatch::Differs(why) = t.matches(&targeted) else { panic!() };
        assert!(why.contains("target `build` where this one targets the last stage"), "{why}");
        // Older files: by name, and said so; a name with no build at all is absent.
        assert_eq!(t.matches(&results_with(vec![rebuild(true, 1.0, 1)])), TemplateMatch::Unrecorded);
        assert_eq!(t.matches(&recorded(&t, vec![rebuild(true, 1.0, 1)], None)), TemplateMatch::Unrecorded);
        assert_eq!(t.matches(&results_with(vec![])), TemplateMatch::Absent);
    }

    #[test]
    fn an_expectation_without_scenario_covers_the_projects_scenarios_on_each_network_apart() {
        let t = template(vec![expect(|e| {
            e.scenario = None;
            e.max_proxy_requests = Some(0);
        })]);
        // A touch-only rebuild the project does not name: its requests are not judged.
        let mut elsewhere = rebuild(false, 1.0, 1);
        elsewhere.scenario = "touch-only".into();
        let j = judge(std::slice::from_ref(&t), &results_with(vec![rebuild(true, 1.0, 1), elsewhere]), None);
        assert_eq!(j.len(), 1);
        assert_eq!((j[0].outcome, j[0].network.as_deref()), (Outcome::Pass, None), "{j:#?}");
        // The same build over a shaped network: judged on its own, and named.
        let mut remote = rebuild(false, 3.0, 1);
        remote.network = "remote-10mbit".into();
        let j = judge(std::slice::from_ref(&t), &results_with(vec![rebuild(true, 1.0, 1), remote]), None);
        let outcomes: Vec<(Outcome, Option<&str>)> = j.iter().map(|j| (j.outcome, j.network.as_deref())).collect();
        assert_eq!(outcomes, [(Outcome::Pass, None), (Outcome::Fail, Some("remote-10mbit"))], "{j:#?}");
        // Without project scenarios it covers the baselines only.
        let baselines = TemplateExpectations { every_build_scenarios: Vec::new(), ..t.clone() };
        let mut base = rebuild(true, 1.0, 1);
        base.step = BASELINE_STEP.into();
        let j = judge(&[baselines], &results_with(vec![base, rebuild(false, 1.0, 1)]), None);
        assert_eq!((j.len(), j[0].outcome), (1, Outcome::Pass), "{j:#?}");
    }

    #[test]
    fn a_time_without_a_step_is_judged_per_scenario_step_never_pooled() {
        let t = template(vec![expect(|e| {
            e.scenario = None;
            e.user = Some("non-root".into());
            e.max_rebuild_seconds = Some(5.0);
        })]);
        let mut records: Vec<BuildRecord> = (0..6).map(|i| rebuild(true, 1.0 + i as f64 * 0.01, i + 1)).collect();
        records.extend((0..6).map(|i| {
            let mut cold = rebuild(false, 40.0 + i as f64 * 0.1, i + 1);
            cold.step = BASELINE_STEP.into();
            cold
        }));
        let j = judge(std::slice::from_ref(&t), &results_with(records), None);
        let seen: Vec<(Option<&str>, &str, Outcome)> = j.iter().map(|j| (j.step.as_deref(), j.expectation.as_str(), j.outcome)).collect();
        // The project names scenarios: their rebuilds are timed, each step apart; the cold baselines are not.
        assert_eq!(seen, [(None, "user = \"non-root\"", Outcome::Pass), (Some("edit-handler"), "max_rebuild_seconds = 5", Outcome::Pass)], "{j:#?}");
        // A project scenario with no build is said.
        let two = TemplateExpectations { every_build_scenarios: vec!["edit-go-source".into(), "touch-only".into()], ..t.clone() };
        let j = judge(&[two], &results_with((0..6).map(|i| rebuild(true, 1.0, i + 1)).collect()), None);
        assert!(j.iter().any(|j| j.scenario.as_deref() == Some("touch-only") && j.measured == "no build recorded" && j.outcome == Outcome::Fail), "{j:#?}");
    }

    #[test]
    fn a_build_that_built_in_the_baseline_and_now_fails_or_is_missing_is_a_regression() {
        let t = template(vec![expect(|e| e.all_cached = Some(true))]);
        let before = results_with(vec![rebuild(true, 1.0, 1)]);
        let mut failed = rebuild(true, 1.0, 1);
        failed.outcome = crate::results::Outcome::Failed;
        failed.error = Some("boom".into());
        let j = judge(std::slice::from_ref(&t), &results_with(vec![failed]), Some(&before));
        assert!(j.iter().any(|j| j.expectation == "builds as in --baseline" && j.outcome == Outcome::Fail && j.reason.as_deref() == Some("boom")), "{j:#?}");
        let mut empty = results_with(vec![]);
        empty.options.scenarios = vec!["edit-go-source".into()];
        let j = judge(&[t], &empty, Some(&before));
        assert!(j.iter().any(|j| j.expectation == "builds as in --baseline" && j.measured == "missing"), "{j:#?}");
    }

    #[test]
    fn patterns_match_by_prefix_glob_or_line() {
        let layer = |text: &str, line| LayerRecord {
            stage: "build".into(),
            instruction: text.into(),
            line: Some(line),
            vertex: String::new(),
            cached: true,
            duration_ms: 0.0,
            start_ms: None,
            end_ms: None,
            error: None,
            miss_reason: None,
        };
        let l = layer("RUN  go mod download -x", 5);
        assert!(StepPattern::parse("RUN go mod download").unwrap().matches_layer(&l));
        assert!(StepPattern::parse("RUN go * -x").unwrap().matches_layer(&l));
        assert!(!StepPattern::parse("RUN go * -y").unwrap().matches_layer(&l));
        assert!(StepPattern::parse("line:5").unwrap().matches_layer(&l));
        assert!(!StepPattern::parse("line:6").unwrap().matches_layer(&l));
        assert!(StepPattern::parse("line:x").is_err());
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap().0, 1_610_612_736);
        assert_eq!(ByteSize::parse("800kB").unwrap().0, 800_000);
    }
}
