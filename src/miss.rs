//! Why a step missed the build cache: each executed step's reason, computed from what the build saw (Dockerfile, build arguments, context files, base images) against the cell's previous build, never guessed.
//!
//! For each stage, its first executed step gets the first of these that holds
//! (the order follows how a cache key is built, from the bottom up):
//! 1. `cold`: the build ignored the cache;
//! 2. `follows`: the stage starts `FROM` another stage that had an executed step;
//! 3. `base-image`: the stage's `FROM` image (build arguments expanded) resolved to another image id;
//! 4. `instruction`: the step's text, or an earlier instruction of its stage that
//!    goes into the step's cache key, changed (an `ARG` counts by its value:
//!    a new default hidden by the same build argument changes nothing);
//! 5. `build-arg`: a build argument the step uses changed value: for `RUN`,
//!    every `ARG` the stage declared before it (Docker passes them all to the
//!    command); for other instructions, those written `$X` or `${X}` in it;
//! 6. `follows`: a `COPY --from=<stage>` whose stage had an executed step;
//! 7. `files`: files under the step's `COPY`/`ADD` sources, or a `RUN`'s bind
//!    mounts, in the context as sent, changed content, mode, owner, kind, link
//!    target or presence (modification times are not compared: neither
//!    builder's cache key holds them);
//! 8. `remote`: an `ADD` of a URL or a git repository, fetched at build time;
//!    layerbench records nothing of what it fetched;
//! 9. `unexplained`: nothing recorded explains the miss.
//!
//! The stage's later executed steps `follow` its first one. A global `ARG`
//! (before the first `FROM`) counts in a stage only when the stage declares it again.

use std::collections::BTreeMap;

pub use crate::context::{ContextFiles, FileState};
use crate::context::IgnoreRules;
use crate::dockerfile::{DockerfileModel, Instruction};
use crate::results::{LayerRecord, MissKind, MissReason};

/// How many changed files a `files` reason names before `and N more`.
const FILES_NAMED: usize = 3;

/// What one build saw: everything a step's cache key can depend on that layerbench records.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInputs {
    pub model: DockerfileModel,
    /// The build arguments sent.
    pub build_args: BTreeMap<String, String>,
    /// The context as the builder received it.
    pub context: ContextFiles,
    /// Per stage (by name) whose `FROM` names an image: the image reference (arguments expanded) and the id it resolved to (`None` when unknown).
    pub base_images: BTreeMap<String, BaseImageRef>,
    /// The build ignored the cache.
    pub no_cache: bool,
}

/// A stage's base image as the build resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImageRef {
    pub reference: String,
    pub id: Option<String>,
}

/// For each stage whose `FROM` names an image (not `scratch`, not an earlier stage): the reference with global build arguments expanded. The runner resolves them to image ids.
pub fn base_image_references(model: &DockerfileModel, build_args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let globals = global_args(model, build_args);
    let mut stages: Vec<&str> = Vec::new();
    let mut out = BTreeMap::new();
    for ins in model.instructions.iter().filter(|i| i.keyword == "FROM") {
        let image = expand(&from_image(ins), &globals);
        let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image)) || stage_by_index(&stages, &image).is_some();
        if image != "scratch" && !is_stage && !image.is_empty() {
            out.insert(ins.stage.clone(), image);
        }
        stages.push(&ins.stage);
    }
    out
}

/// Sets `miss_reason` on every executed step of `layers` (one build's, as recorded) that is not a `FROM`; cached steps get none.
/// `previous` is what the cell's previous build saw (`None` for its first build).
pub fn explain(previous: Option<&BuildInputs>, now: &BuildInputs, layers: &mut [LayerRecord]) {
    // The first executed step of each stage: (stage, instruction text, line).
    let mut first_missed: BTreeMap<String, (String, Option<usize>)> = BTreeMap::new();
    for l in layers.iter().filter(|l| !l.cached && !l.is_base_image() && !l.stage.is_empty()) {
        first_missed.entry(l.stage.clone()).or_insert_with(|| (l.instruction.clone(), l.line));
    }
    for layer in layers.iter_mut() {
        // A global ARG (stage ``, which the legacy builder reports as a step) is no cached step.
        if layer.cached || layer.is_base_image() || layer.stage.is_empty() {
            layer.miss_reason = None;
            continue;
        }
        let reason = match first_missed.get(&layer.stage) {
            Some((text, line)) if *line != layer.line => MissReason {
                kind: MissKind::Follows,
                detail: format!("{} missed", step_name(text, *line)),
                line: *line,
            },
            _ => first_reason(previous, now, layer, &first_missed),
        };
        layer.miss_reason = Some(reason);
    }
}

/// `` `COPY . .` (line 8) ``
fn step_name(text: &str, line: Option<usize>) -> String {
    match line {
        Some(n) => format!("`{text}` (line {n})"),
        None => format!("`{text}`"),
    }
}

fn reason(kind: MissKind, detail: String, line: Option<usize>) -> MissReason {
    MissReason { kind, detail, line }
}

/// The reason of a stage's first executed step (see the module's list for the order).
fn first_reason(previous: Option<&BuildInputs>, now: &BuildInputs, layer: &LayerRecord, first_missed: &BTreeMap<String, (String, Option<usize>)>) -> MissReason {
    if now.no_cache {
        return reason(MissKind::Cold, "the build ignored the cache (a cold baseline)".into(), None);
    }
    let Some(step) = layer.line.and_then(|n| now.model.instructions.iter().find(|i| i.line == n && i.stage == layer.stage)) else {
        return reason(MissKind::Unexplained, "the step maps to no instruction of the Dockerfile".into(), None);
    };
    let stage_missed = |stage: &str| first_missed.get(stage).map(|(text, line)| (format!("stage `{stage}`: {} missed", step_name(text, *line)), *line));
    let stages = stage_names(&now.model);
    let from = now.model.instructions.iter().find(|i| i.keyword == "FROM" && i.stage == step.stage);
    let globals = global_args(&now.model, &now.build_args);
    if let Some(source) = from.and_then(|f| stage_ref(&stages, &expand(&from_image(f), &globals), &step.stage)) {
        if let Some((detail, line)) = stage_missed(&source) {
            return reason(MissKind::Follows, detail, line);
        }
    }
    let Some(previous) = previous else {
        return reason(MissKind::Unexplained, "no earlier build of this cell to compare with".into(), None);
    };
    if let (Some(was), Some(is)) = (previous.base_images.get(&step.stage), now.base_images.get(&step.stage)) {
        if let (Some(was_id), Some(is_id), Some(from)) = (&was.id, &is.id, from) {
            if was_id != is_id {
                let detail = format!(
                    "{} resolves to {} ({}), was {} ({})",
                    step_name(&from.text, Some(from.line)),
                    is.reference,
                    short_id(is_id),
                    was.reference,
                    short_id(was_id)
                );
                return reason(MissKind::BaseImage, detail, Some(from.line));
            }
        }
    }
    if let Some(r) = changed_instruction(previous, now, step) {
        return r;
    }
    if let Some(r) = changed_build_arg(previous, now, step) {
        return r;
    }
    if let Some(source) = copy_from(step).and_then(|f| stage_ref(&stages, &f, &step.stage)) {
        if let Some((detail, line)) = stage_missed(&source) {
            return reason(MissKind::Follows, detail, line);
        }
    }
    if let Some(r) = changed_files(previous, now, step) {
        return r;
    }
    if let Some(url) = remote_source(step) {
        let detail = format!("{} fetches {url} at build time: what it fetched is not recorded, and a change there makes the step miss", step_name(&step.text, Some(step.line)));
        return reason(MissKind::Remote, detail, Some(step.line));
    }
    reason(
        MissKind::Unexplained,
        "nothing recorded changed for this step (its instruction, the build arguments it uses, its base image and the files under its sources are as in the previous build)".into(),
        None,
    )
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// Instructions that only set image metadata: no later step's cache key holds them (BuildKit), or they are steps of their own (legacy).
fn is_metadata_only(keyword: &str) -> bool {
    matches!(keyword, "LABEL" | "EXPOSE" | "CMD" | "ENTRYPOINT" | "VOLUME" | "STOPSIGNAL" | "HEALTHCHECK" | "MAINTAINER" | "ONBUILD")
}

/// Whether an earlier instruction of the stage goes into `step`'s cache key.
fn affects(earlier: &Instruction, step: &Instruction) -> bool {
    match earlier.keyword.as_str() {
        "FROM" => false,
        k if is_metadata_only(k) => false,
        // Their values reach a RUN's environment or user; other steps only through a `$X` they write.
        "ENV" | "ARG" => step.keyword == "RUN" || declared_names(earlier).iter().any(|n| references(&step.text, n)),
        "USER" | "SHELL" => step.keyword == "RUN",
        _ => true,
    }
}

/// The stage's instructions up to `step` that go into its cache key, and `step` itself.
fn key_instructions<'m>(model: &'m DockerfileModel, stage: &str, step: &Instruction) -> Vec<&'m Instruction> {
    model
        .instructions
        .iter()
        .filter(|i| i.stage == stage)
        .take_while(|i| i.line <= step.line)
        .filter(|i| i.line == step.line || affects(i, step))
        .collect()
}

fn changed_instruction(previous: &BuildInputs, now: &BuildInputs, step: &Instruction) -> Option<MissReason> {
    if !previous.model.instructions.iter().any(|i| i.stage == step.stage) {
        return Some(reason(MissKind::Instruction, format!("stage `{}` is new", step.stage), Some(step.line)));
    }
    // Aligned by position among the instructions that go into the step's key, so an added LABEL shifts nothing.
    let is = key_instructions(&now.model, &step.stage, step);
    let was: Vec<&Instruction> = previous.model.instructions.iter().filter(|i| i.stage == step.stage && affects(i, step)).collect();
    let (n, ins) = is.iter().enumerate().find(|(n, ins)| !was.get(*n).is_some_and(|w| same_instruction(previous, w, now, ins)))?;
    let name = step_name(&ins.text, Some(ins.line));
    let same_text = |a: Option<&&Instruction>, b: Option<&&Instruction>| a.zip(b).is_some_and(|(a, b)| a.text == b.text);
    let detail = match was.get(n) {
        Some(w) if same_text(is.get(n + 1), Some(w)) => format!("{name} is new"),
        Some(w) if same_text(was.get(n + 1), Some(ins)) => format!("`{}` was removed (it stood before line {})", w.text, ins.line),
        Some(w) => format!("{name} changed, was `{}`", w.text),
        None => format!("{name} is new"),
    };
    Some(reason(MissKind::Instruction, detail, Some(ins.line)))
}

/// Equal text, or two `ARG`s declaring the same names with the same values in their builds.
fn same_instruction(previous: &BuildInputs, was: &Instruction, now: &BuildInputs, is: &Instruction) -> bool {
    if was.text == is.text {
        return true;
    }
    if was.keyword != "ARG" || is.keyword != "ARG" || declared_names(was) != declared_names(is) {
        return false;
    }
    let values = |inputs: &BuildInputs, ins: &Instruction| {
        let scope = stage_args(&inputs.model, &inputs.build_args, &ins.stage, ins.line + 1);
        declared_names(ins).into_iter().map(|n| scope.iter().find(|a| a.name == n).and_then(|a| a.value.clone())).collect::<Vec<_>>()
    };
    values(previous, was) == values(now, is)
}

fn changed_build_arg(previous: &BuildInputs, now: &BuildInputs, step: &Instruction) -> Option<MissReason> {
    // An ARG step also uses the arguments it declares itself.
    let past = usize::from(step.keyword == "ARG");
    let is = stage_args(&now.model, &now.build_args, &step.stage, step.line + past);
    // The instructions before the step are the same (checked before), so the previous build's scope lies at the same place in its stage.
    let position = now.model.instructions.iter().filter(|i| i.stage == step.stage && i.line < step.line).count();
    let was_line = previous.model.instructions.iter().filter(|i| i.stage == step.stage).nth(position).map_or(usize::MAX - 1, |i| i.line);
    let was = stage_args(&previous.model, &previous.build_args, &step.stage, was_line + past);
    let declared = declared_names(step);
    let uses = |name: &str| step.keyword == "RUN" || references(&step.text, name) || (past == 1 && declared.iter().any(|d| d == name));
    for arg in is.iter().filter(|a| uses(&a.name)) {
        let before = was.iter().find(|a| a.name == arg.name).and_then(|a| a.value.clone());
        if before != arg.value {
            let show = |v: &Option<String>| v.as_ref().map_or("unset".to_string(), |v| format!("`{v}`"));
            let detail = format!("`{}` (ARG line {}) changed: {} → {}", arg.name, arg.line, show(&before), show(&arg.value));
            return Some(reason(MissKind::BuildArg, detail, Some(arg.line)));
        }
    }
    None
}

fn changed_files(previous: &BuildInputs, now: &BuildInputs, step: &Instruction) -> Option<MissReason> {
    let written = match step.keyword.as_str() {
        "COPY" | "ADD" if copy_from(step).is_none() => copy_sources(&step.text),
        "RUN" => bind_mount_sources(&step.text),
        _ => return None,
    };
    if written.is_empty() {
        return None;
    }
    let scope: BTreeMap<String, String> = stage_args(&now.model, &now.build_args, &step.stage, step.line)
        .into_iter()
        .filter_map(|a| Some((a.name, a.value?)))
        .collect();
    let sources: Vec<String> = written.iter().map(|s| expand(s, &scope)).collect();
    let everything = sources.iter().any(|s| matches!(s.trim_start_matches("./").trim_matches('/'), "" | "."));
    let rules = IgnoreRules::parse(&sources.join("\n"), std::path::Path::new("COPY sources")).ok()?;
    let under = |path: &str| everything || rules.is_excluded(path);
    let mut paths: Vec<&String> = previous.context.files.keys().chain(now.context.files.keys()).filter(|p| under(p)).collect();
    paths.sort();
    paths.dedup();
    let changes: Vec<String> = paths
        .into_iter()
        .filter_map(|p| {
            let how = match (previous.context.files.get(p), now.context.files.get(p)) {
                (None, Some(_)) => "added".to_string(),
                (Some(_), None) => "removed".to_string(),
                (Some(a), Some(b)) => file_change(a, b)?,
                (None, None) => return None,
            };
            Some(format!("{p} ({how})"))
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    let mut detail = changes.iter().take(FILES_NAMED).cloned().collect::<Vec<_>>().join(", ");
    if changes.len() > FILES_NAMED {
        detail.push_str(&format!(" and {} more", changes.len() - FILES_NAMED));
    }
    Some(reason(MissKind::Files, detail, Some(step.line)))
}

/// How a path changed between two builds, if it did in anything a cache key holds.
fn file_change(a: &FileState, b: &FileState) -> Option<String> {
    let mut how = Vec::new();
    if a.kind != b.kind {
        how.push(format!("{} → {}", a.kind, b.kind));
    } else if a.digest != b.digest {
        how.push("content".to_string());
    }
    if a.link != b.link && a.kind == b.kind {
        how.push("link target".to_string());
    }
    if a.mode != b.mode {
        how.push(format!("mode {:o} → {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        how.push(format!("owner {}:{} → {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    (!how.is_empty()).then(|| how.join(", "))
}

/// An `ARG` in scope: its name, its value in this build (`None` when unset) and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArgValue {
    name: String,
    value: Option<String>,
    line: usize,
}

/// `ARG A=1 B` → [(`A`, Some(`1`)), (`B`, None)].
fn declarations(ins: &Instruction) -> Vec<(String, Option<String>)> {
    ins.text
        .split_whitespace()
        .skip(1)
        .map(|w| match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.trim_matches('"').trim_matches('\'').to_string())),
            None => (w.to_string(), None),
        })
        .collect()
}

/// The names an `ARG` or `ENV` declares (`ENV A B` old form declares `A`).
fn declared_names(ins: &Instruction) -> Vec<String> {
    match ins.keyword.as_str() {
        "ENV" if !ins.text.split_whitespace().nth(1).is_some_and(|w| w.contains('=')) => ins.text.split_whitespace().nth(1).map(str::to_string).into_iter().collect(),
        _ => declarations(ins).into_iter().map(|(n, _)| n).collect(),
    }
}

/// The global `ARG`s (before the first `FROM`) with their values: the build argument sent, else the default.
fn global_args(model: &DockerfileModel, build_args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ins in model.instructions.iter().take_while(|i| i.keyword != "FROM").filter(|i| i.keyword == "ARG") {
        for (name, default) in declarations(ins) {
            if let Some(v) = build_args.get(&name).cloned().or(default) {
                out.insert(name, v);
            }
        }
    }
    out
}

/// The `ARG`s `stage` declares before `line`, with their values: the build
/// argument sent, else the default, else (for a name declared globally and
/// without a default here) the global value. The last declaration of a name wins.
fn stage_args(model: &DockerfileModel, build_args: &BTreeMap<String, String>, stage: &str, line: usize) -> Vec<ArgValue> {
    let globals = global_args(model, build_args);
    let mut out: Vec<ArgValue> = Vec::new();
    for ins in model.instructions.iter().filter(|i| i.stage == stage && i.keyword == "ARG" && i.line < line) {
        for (name, default) in declarations(ins) {
            let value = build_args.get(&name).cloned().or(default).or_else(|| globals.get(&name).cloned());
            out.retain(|a| a.name != name);
            out.push(ArgValue { name, value, line: ins.line });
        }
    }
    out
}

/// Whether `text` uses the variable `name` as `$name` or `${name…}`.
fn references(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices('$').any(|(i, _)| {
        let rest = &text[i + 1..];
        match rest.strip_prefix('{') {
            Some(inner) => inner.strip_prefix(name).is_some_and(|after| after.starts_with('}') || after.starts_with(':')),
            None => rest.strip_prefix(name).is_some_and(|after| !after.starts_with(is_ident)),
        }
    })
}

/// Expands `$X`, `${X}`, `${X:-word}` and `${X:+word}` from `values` (unset names expand to nothing).
fn expand(text: &str, values: &BTreeMap<String, String>) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let body = &inner[..end];
            let value = match body.split_once(":-").map(|x| (x, true)).or_else(|| body.split_once(":+").map(|x| (x, false))) {
                Some(((name, word), true)) => values.get(name).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| word.to_string()),
                Some(((name, word), false)) => values.get(name).filter(|v| !v.is_empty()).map(|_| word.to_string()).unwrap_or_default(),
                None => values.get(body).cloned().unwrap_or_default(),
            };
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            let len = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(values.get(&after[..len]).map_or("", String::as_str));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// The image a `FROM` names (flags such as `--platform` skipped), as written.
fn from_image(ins: &Instruction) -> String {
    ins.text.split_whitespace().skip(1).find(|w| !w.starts_with("--")).unwrap_or("").to_string()
}

fn stage_names(model: &DockerfileModel) -> Vec<&str> {
    model.instructions.iter().filter(|i| i.keyword == "FROM").map(|i| i.stage.as_str()).collect()
}

fn stage_by_index<'a>(stages: &[&'a str], name: &str) -> Option<&'a str> {
    name.parse::<usize>().ok().and_then(|n| stages.get(n).copied())
}

/// The stage `name` refers to (by name or index) from within `current`: only an earlier stage.
fn stage_ref(stages: &[&str], name: &str, current: &str) -> Option<String> {
    let before: Vec<&str> = stages.iter().copied().take_while(|s| *s != current).collect();
    before
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| stage_by_index(&before, name))
        .map(str::to_string)
}

/// The first source of an `ADD` that is fetched rather than read from the context: a URL or a git repository.
fn remote_source(step: &Instruction) -> Option<String> {
    if step.keyword != "ADD" {
        return None;
    }
    copy_sources(&step.text).into_iter().find(|s| s.contains("://") || s.starts_with("git@"))
}

/// A `COPY --from=X` / `ADD --from=X` source.
fn copy_from(step: &Instruction) -> Option<String> {
    if !matches!(step.keyword.as_str(), "COPY" | "ADD") {
        return None;
    }
    step.text.split_whitespace().skip(1).take_while(|w| w.starts_with("--")).find_map(|w| w.strip_prefix("--from=").map(str::to_string))
}

/// The context paths a `RUN`'s bind mounts read (`--mount=type=bind,source=go.sum,target=…`; `bind` is the default
/// type, a missing source is the whole context), leaving out mounts of another stage or image (`from=`); cache,
/// secret, ssh and tmpfs mounts read no context file.
fn bind_mount_sources(text: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for flag in text.split_whitespace().skip(1).take_while(|w| w.starts_with("--")) {
        let Some(spec) = flag.strip_prefix("--mount=") else { continue };
        let fields: BTreeMap<&str, &str> = spec.split(',').filter_map(|f| f.split_once('=')).map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))).collect();
        if fields.get("type").is_some_and(|t| *t != "bind") || fields.contains_key("from") {
            continue;
        }
        sources.push(fields.get("source").or_else(|| fields.get("src")).map_or(".".to_string(), |s| s.to_string()));
    }
    sources
}

/// The sources of a `COPY`/`ADD` (flags and the destination left out), in either form.
fn copy_sources(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().skip(1).skip_while(|w| w.starts_with("--")).collect();
    let rest = words.join(" ");
    let mut all: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(&rest).unwrap_or_default()
    } else {
        words.iter().map(|w| w.to_string()).collect()
    };
    all.pop(); // the destination
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::IgnoreDialect;
    use crate::results::Builder;

    const DOCKERFILE: &str = "ARG BASE=golang:1.23\nARG GLOBAL=g\nFROM ${BASE} AS build\nARG GOPROXY\nARG VERSION=1\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /out/app .\nFROM scratch\nCOPY --from=build /out/app /app\nUSER 1\n";

    fn state(content: &str) -> FileState {
        FileState { kind: "file", digest: content.to_string(), mode: 0o644, uid: 0, gid: 0, link: None }
    }

    fn inputs(dockerfile: &str, args: &[(&str, &str)], files: &[(&str, &str)]) -> BuildInputs {
        let model = DockerfileModel::parse(dockerfile);
        let build_args: BTreeMap<String, String> = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let base_images = base_image_references(&model, &build_args)
            .into_iter()
            .map(|(stage, reference)| {
                let id = Some(format!("sha256:{}", reference.replace(':', "-")));
                (stage, BaseImageRef { reference, id })
            })
            .collect();
        BuildInputs {
            context: ContextFiles { files: files.iter().map(|(p, c)| (p.to_string(), state(c))).collect() },
            model,
            build_args,
            base_images,
            no_cache: false,
        }
    }

    const FILES: &[(&str, &str)] = &[("go.mod", "m"), ("go.sum", "s"), ("main.go", "a"), ("lib/x.go", "x")];

    /// The steps of DOCKERFILE (FROMs included), executed from the one starting `first` in each listed stage on.
    fn layers(inputs: &BuildInputs, executed_from: &[&str]) -> Vec<LayerRecord> {
        let mut missed: Vec<String> = Vec::new();
        inputs
            .model
            .instructions
            .iter()
            .filter(|i| !i.stage.is_empty() && matches!(i.keyword.as_str(), "FROM" | "RUN" | "COPY" | "WORKDIR"))
            .map(|i| {
                if executed_from.iter().any(|p| i.text.starts_with(p)) {
                    missed.push(i.stage.clone());
                }
                LayerRecord {
                    stage: i.stage.clone(),
                    instruction: i.text.clone(),
                    line: Some(i.line),
                    vertex: String::new(),
                    cached: !missed.contains(&i.stage) && i.keyword != "FROM",
                    duration_ms: 0.0,
                    start_ms: None,
                    end_ms: None,
                    error: None,
                    miss_reason: None,
                }
            })
            .collect()
    }

    fn reason_of<'a>(layers: &'a [LayerRecord], prefix: &str) -> Option<&'a MissReason> {
        layers.iter().find(|l| l.instruction.starts_with(prefix)).and_then(|l| l.miss_reason.as_ref())
    }

    fn explained(previous: &BuildInputs, now: &BuildInputs, executed_from: &[&str]) -> Vec<LayerRecord> {
        let mut l = layers(now, executed_from);
        explain(Some(previous), now, &mut l);
        l
    }

    #[test]
    fn an_edited_source_file_is_named_with_how_it_changed() {
        let before = inputs(DOCKERFILE, &[], FILES);
        let after = inputs(DOCKERFILE, &[], &[("go.mod", "m"), ("go.sum", "s"), ("main.go", "b"), ("lib/x.go", "x")]);
        let l = explained(&before, &after, &["COPY . .", "COPY --from"]);
        let r = reason_of(&l, "COPY . .").unwrap();
        assert_eq!((r.kind, r.detail.as_str(), r.line), (MissKind::Files, "main.go (content)", Some(9)));
        assert_eq!(r.to_string(), "files: main.go (content)");
        let next = reason_of(&l, "RUN go build").unwrap();
        assert_eq!((next.kind, next.line), (MissKind::Follows, Some(9)));
        assert!(next.detail.contains("`COPY . .` (line 9)"), "{}", next.detail);
        let copy = reason_of(&l, "COPY --from").unwrap();
        assert_eq!((copy.kind, copy.line), (MissKind::Follows, Some(9)), "{copy}");
        assert!(copy.detail.starts_with("stage `build`"), "{copy}");
        assert!(reason_of(&l, "RUN go mod download").is_none(), "a cached step has no reason");
        assert!(reason_of(&l, "FROM").is_none(), "a FROM has none");
    }

    #[test]
    fn files_outside_a_steps_sources_do_not_explain_it() {
        let before = inputs(DOCKERFILE, &[], FILES);
        let after = inputs(DOCKERFILE, &[], &[("go.mod", "m"), ("go.sum", "s"), ("main.go", "b"), ("lib/x.go", "x")]);
        let l = explained(&before, &after, &["COPY go.mod"]);
        assert_eq!(reason_of(&l, "COPY go.mod").unwrap().kind, MissKind::Unexplained, "main.go is not under `go.mod go.sum`");
    }

    #[test]
    fn mode_owner_presence_and_the_count_beyond_the_first_few_are_told() {
        let before = inputs(DOCKERFILE, &[], FILES);
        let mut after = inputs(DOCKERFILE, &[], &[("go.mod", "m"), ("go.sum", "s"), ("main.go", "a"), ("new.go", "n"), ("z1", "1"), ("z2", "2")]);
        after.context.files.get_mut("main.go").unwrap().mode = 0o755;
        after.context.files.get_mut("go.mod").unwrap().uid = 1000;
        let l = explained(&before, &after, &["COPY . ."]);
        let r = reason_of(&l, "COPY . .").unwrap();
        assert_eq!(r.kind, MissKind::Files);
        assert_eq!(r.detail, "go.mod (owner 0:0 → 1000:0), lib/x.go (removed), main.go (mode 644 → 755) and 3 more");
    }

    #[test]
    fn globs_and_folders_under_copy_sources_are_matched() {
        let df = "FROM golang:1.23 AS build\nCOPY *.mod ./\nCOPY [\"lib\", \"/lib\"]\nCOPY ./lib/ /x/\n";
        let before = inputs(df, &[], FILES);
        let after = inputs(df, &[], &[("go.mod", "m2"), ("go.sum", "s"), ("main.go", "a"), ("lib/x.go", "y")]);
        let l = explained(&before, &after, &["COPY *.mod", "COPY [", "COPY ./lib"]);
        assert_eq!(reason_of(&l, "COPY *.mod").unwrap().to_string(), "files: go.mod (content)");
        // Later steps of the stage follow the first; each source still resolves on its own:
        assert_eq!(copy_sources("COPY [\"lib\", \"/lib\"]"), ["lib"]);
        assert_eq!(copy_sources("COPY --chown=1:1 a b ./"), ["a", "b"]);
        let l = explained(&before, &after, &["COPY ./lib"]);
        assert_eq!(reason_of(&l, "COPY ./lib").unwrap().to_string(), "files: lib/x.go (content)");
    }

    #[test]
    fn a_modification_time_alone_leaves_a_miss_unexplained() {
        // The context tars differ only in mtimes: the states read from them are equal.
        let before = inputs(DOCKERFILE, &[], FILES);
        let after = inputs(DOCKERFILE, &[], FILES);
        let l = explained(&before, &after, &["COPY . ."]);
        let r = reason_of(&l, "COPY . .").unwrap();
        assert_eq!(r.kind, MissKind::Unexplained, "{r}");
        let mut first = layers(&after, &["COPY . ."]);
        explain(None, &after, &mut first);
        assert_eq!(reason_of(&first, "COPY . .").unwrap().kind, MissKind::Unexplained, "no previous build: nothing to compare");
    }

    #[test]
    fn a_build_that_ignored_the_cache_is_cold_and_later_steps_follow() {
        let previous = inputs(DOCKERFILE, &[], FILES);
        let mut now = inputs(DOCKERFILE, &[], FILES);
        now.no_cache = true;
        let l = explained(&previous, &now, &["WORKDIR", "COPY --from"]);
        assert_eq!(reason_of(&l, "WORKDIR").unwrap().kind, MissKind::Cold);
        assert_eq!(reason_of(&l, "RUN go build").unwrap().kind, MissKind::Follows);
        assert_eq!(reason_of(&l, "COPY --from").unwrap().kind, MissKind::Cold, "the first step of each stage");
        let mut first = layers(&now, &["WORKDIR"]);
        explain(None, &now, &mut first);
        assert_eq!(reason_of(&first, "WORKDIR").unwrap().kind, MissKind::Cold);
    }

    #[test]
    fn a_changed_base_image_is_named_with_both_references() {
        let before = inputs(DOCKERFILE, &[], FILES);
        let after = inputs(DOCKERFILE, &[("BASE", "debian:bookworm-slim")], FILES);
        assert_eq!(after.base_images["build"].reference, "debian:bookworm-slim", "FROM expands global ARGs with the build args");
        let l = explained(&before, &after, &["WORKDIR"]);
        let r = reason_of(&l, "WORKDIR").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::BaseImage, Some(3)));
        assert!(r.detail.contains("resolves to debian:bookworm-slim") && r.detail.contains("was golang:1.23"), "{r}");
    }

    #[test]
    fn a_changed_step_or_an_earlier_instruction_it_depends_on_is_named() {
        let before = inputs(DOCKERFILE, &[], FILES);
        let edited = DOCKERFILE.replace("RUN go mod download", "RUN go mod download -x");
        let after = inputs(&edited, &[], FILES);
        let l = explained(&before, &after, &["RUN go mod download"]);
        let r = reason_of(&l, "RUN go mod download").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::Instruction, Some(8)));
        assert_eq!(r.detail, "`RUN go mod download -x` (line 8) changed, was `RUN go mod download`");

        let env = DOCKERFILE.replace("WORKDIR /src\n", "WORKDIR /src\nENV CGO_ENABLED=0\n");
        let after = inputs(&env, &[], FILES);
        let l = explained(&before, &after, &["RUN go mod download"]);
        let r = reason_of(&l, "RUN go mod download").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::Instruction, Some(7)), "{r}");
        assert_eq!(r.detail, "`ENV CGO_ENABLED=0` (line 7) is new");
        let l = explained(&after, &before, &["RUN go mod download"]);
        assert_eq!(reason_of(&l, "RUN go mod download").unwrap().detail, "`ENV CGO_ENABLED=0` was removed (it stood before line 7)");
        let env2 = env.replace("CGO_ENABLED=0", "CGO_ENABLED=1");
        let l = explained(&after, &inputs(&env2, &[], FILES), &["RUN go mod download"]);
        assert_eq!(reason_of(&l, "RUN go mod download").unwrap().detail, "`ENV CGO_ENABLED=1` (line 7) changed, was `ENV CGO_ENABLED=0`");

        // An ENV does not go into a COPY's key; a LABEL goes into no step's key.
        let label = DOCKERFILE.replace("WORKDIR /src\n", "WORKDIR /src\nENV X=1\nLABEL a=b\n");
        let after = inputs(&label, &[], FILES);
        let l = explained(&before, &after, &["COPY go.mod"]);
        assert_eq!(reason_of(&l, "COPY go.mod").unwrap().kind, MissKind::Unexplained);

        let default = DOCKERFILE.replace("ARG VERSION=1", "ARG VERSION=2");
        let l = explained(&before, &inputs(&default, &[], FILES), &["RUN go mod download"]);
        assert_eq!(reason_of(&l, "RUN go mod download").unwrap().line, Some(5), "a new ARG default is the ARG line");
        let hidden = explained(&inputs(DOCKERFILE, &[("VERSION", "7")], FILES), &inputs(&default, &[("VERSION", "7")], FILES), &["RUN go mod download"]);
        assert_eq!(reason_of(&hidden, "RUN go mod download").unwrap().kind, MissKind::Unexplained, "a default the build argument hides changes nothing");
    }

    #[test]
    fn a_changed_build_argument_explains_a_run_after_its_arg_and_steps_that_name_it() {
        let before = inputs(DOCKERFILE, &[("VERSION", "1")], FILES);
        let after = inputs(DOCKERFILE, &[("VERSION", "2")], FILES);
        let l = explained(&before, &after, &["RUN go mod download"]);
        let r = reason_of(&l, "RUN go mod download").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::BuildArg, Some(5)));
        assert_eq!(r.detail, "`VERSION` (ARG line 5) changed: `1` → `2`");
        // A COPY uses only the arguments it names.
        let l = explained(&before, &after, &["COPY go.mod"]);
        assert_eq!(reason_of(&l, "COPY go.mod").unwrap().kind, MissKind::Unexplained);
        let named = DOCKERFILE.replace("COPY go.mod go.sum ./", "COPY go.mod go.sum /v${VERSION}/");
        let l = explained(&inputs(&named, &[("VERSION", "1")], FILES), &inputs(&named, &[("VERSION", "2")], FILES), &["COPY go.mod"]);
        assert_eq!(reason_of(&l, "COPY go.mod").unwrap().kind, MissKind::BuildArg);
    }

    #[test]
    fn a_global_arg_counts_in_a_stage_only_when_redeclared_there() {
        let before = inputs(DOCKERFILE, &[("GLOBAL", "1")], FILES);
        let after = inputs(DOCKERFILE, &[("GLOBAL", "2")], FILES);
        let l = explained(&before, &after, &["RUN go mod download"]);
        assert_eq!(reason_of(&l, "RUN go mod download").unwrap().kind, MissKind::Unexplained, "GLOBAL is not declared in `build`");
        let redeclared = DOCKERFILE.replace("ARG VERSION=1", "ARG VERSION=1\nARG GLOBAL");
        let l = explained(&inputs(&redeclared, &[("GLOBAL", "1")], FILES), &inputs(&redeclared, &[("GLOBAL", "2")], FILES), &["RUN go mod download"]);
        let r = reason_of(&l, "RUN go mod download").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::BuildArg, Some(6)), "{r}");
        // A redeclared global without a default takes the global default.
        let m = DockerfileModel::parse(&redeclared);
        let scope = stage_args(&m, &BTreeMap::new(), "build", 100);
        assert_eq!(scope.iter().find(|a| a.name == "GLOBAL").and_then(|a| a.value.clone()).as_deref(), Some("g"));
    }

    #[test]
    fn a_stage_from_another_stage_follows_its_misses() {
        let df = "FROM golang:1.23 AS deps\nCOPY go.mod ./\nRUN go mod download\nFROM deps AS build\nCOPY . .\nRUN go build .\n";
        let before = inputs(df, &[], FILES);
        let after = inputs(df, &[], &[("go.mod", "m2"), ("go.sum", "s"), ("main.go", "a"), ("lib/x.go", "x")]);
        assert!(!after.base_images.contains_key("build"), "a stage FROM a stage has no base image to resolve");
        let l = explained(&before, &after, &["COPY go.mod", "COPY . ."]);
        let r = reason_of(&l, "COPY . .").unwrap();
        assert_eq!((r.kind, r.line), (MissKind::Follows, Some(2)), "{r}");
    }

    #[test]
    fn variables_are_found_and_expanded_as_docker_writes_them() {
        assert!(references("RUN echo ${V}", "V") && references("COPY $V/x .", "V") && references("RUN ${V:-a}", "V"));
        assert!(!references("RUN echo $VERSION", "V") && !references("RUN echo V", "V"));
        let values: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$A/${A}/${B:-d}/${A:+set}/$B/$", &values), "x/x/d/set//$");
    }

    #[test]
    fn a_context_tar_is_read_as_the_builder_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.go"), "package main\n").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "Dockerfile\n.dockerignore\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../main.go", dir.path().join("sub/link")).unwrap();
        let each = [Builder::Buildkit, Builder::Legacy].into_iter().flat_map(|b| [IgnoreDialect::Docker20, IgnoreDialect::Docker23].map(|d| (b, d)));
        for (builder, dialect) in each {
            let ctx = crate::context::build_context(dir.path(), std::path::Path::new("Dockerfile"), builder, dialect).unwrap();
            let files = ContextFiles::from_tar(&ctx.tar, builder, &ctx.dockerfile, dialect).unwrap().files;
            assert_eq!(files["main.go"].kind, "file");
            assert_eq!(files["main.go"].digest.len(), 64);
            assert_eq!((files["sub"].kind, files["sub/link"].link.as_deref()), ("dir", Some("../main.go")));
            // The legacy engine deletes the re-included Dockerfile; BuildKit's tar holds it under a generated name.
            assert!(!files.contains_key("Dockerfile"), "{builder:?}: {:?}", files.keys());
        }
    }

    #[test]
    fn a_run_step_s_bind_mounts_are_its_sources_as_in_docker_s_go_guide() {
        let guide = "RUN --mount=type=cache,target=/go/pkg/mod --mount=type=bind,source=go.sum,target=go.sum --mount=type=bind,source=go.mod,target=go.mod go mod download";
        assert_eq!(bind_mount_sources(guide), ["go.sum", "go.mod"]);
        assert_eq!(bind_mount_sources("RUN --mount=target=/src go build"), ["."], "bind is the default type, the context the default source");
        assert!(bind_mount_sources("RUN --mount=type=bind,from=build,source=/out,target=/o cp /o/x /x").is_empty());
        assert!(bind_mount_sources("RUN --mount=type=secret,id=token --mount=type=ssh make").is_empty());
        let dockerfile = format!("FROM golang:1.23\nWORKDIR /src\n{guide}\nCOPY . .\n");
        let before = inputs(&dockerfile, &[], FILES);
        let after = inputs(&dockerfile, &[], &[("go.mod", "m2"), ("go.sum", "s2"), ("main.go", "a"), ("lib/x.go", "x")]);
        let step = after.model.instructions.iter().find(|i| i.text.starts_with("RUN --mount")).unwrap();
        let r = changed_files(&before, &after, step).expect("a reason");
        assert_eq!((r.kind, r.detail.as_str()), (MissKind::Files, "go.mod (content), go.sum (content)"));
        let unchanged = inputs(&dockerfile, &[], &[("go.mod", "m"), ("go.sum", "s"), ("main.go", "edited"), ("lib/x.go", "x")]);
        assert!(changed_files(&before, &unchanged, step).is_none(), "main.go is not mounted");
    }

    #[test]
    fn copy_flags_are_no_sources_and_a_fetched_add_is_remote() {
        assert_eq!(copy_sources("COPY --link --chmod=755 --chown=65532:65532 go.mod go.sum ./"), ["go.mod", "go.sum"]);
        let df = "FROM golang:1.23 AS build\nADD https://example.org/tool.tar.gz /opt/\nADD --keep-git-dir=true git@example.org:team/lib.git /lib\nADD go.mod /src/\n";
        let model = DockerfileModel::parse(df);
        let url = |line| remote_source(model.instructions.iter().find(|i| i.line == line).unwrap());
        assert_eq!(url(2).as_deref(), Some("https://example.org/tool.tar.gz"));
        assert_eq!(url(3).as_deref(), Some("git@example.org:team/lib.git"));
        assert_eq!(url(4), None);
        // Nothing else changed: the fetched ADD missed for its remote source.
        let before = inputs(df, &[], &[("go.mod", "a")]);
        let after = inputs(df, &[], &[("go.mod", "a")]);
        let mut layers = vec![LayerRecord {
            stage: "build".into(),
            instruction: "ADD https://example.org/tool.tar.gz /opt/".into(),
            line: Some(2),
            vertex: String::new(),
            cached: false,
            duration_ms: 0.0,
            start_ms: None,
            end_ms: None,
            error: None,
            miss_reason: None,
        }];
        explain(Some(&before), &after, &mut layers);
        let r = layers[0].miss_reason.as_ref().unwrap();
        assert_eq!((r.kind, r.line), (MissKind::Remote, Some(2)), "{r}");
        assert!(r.detail.contains("https://example.org/tool.tar.gz"), "{r}");
    }
}
