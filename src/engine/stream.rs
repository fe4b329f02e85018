//! Turns a build's status stream (BuildKit vertexes or legacy text) into step reports; the same code reads recorded streams in tests.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BuildFailure, StepReport};

/// One item of a build stream, reduced to what layerbench reads. Recorded
/// streams (`LAYERBENCH_RECORD_STREAM=FILE`) are JSON lines of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamItem {
    /// A BuildKit vertex update (several updates per vertex, merged by digest).
    Vertex {
        digest: String,
        name: String,
        cached: bool,
        started_unix_ms: Option<u64>,
        completed_unix_ms: Option<u64>,
        error: String,
    },
    /// Legacy-builder text, with its arrival time at the client.
    Text { text: String, at_unix_ms: u64 },
    /// Output a BuildKit vertex printed (a `RUN`'s stdout and stderr), as it came.
    Log { digest: String, data: String },
    /// The error that ends a failed build.
    Error { message: String },
}

/// A line of a recorded stream that is not a stream item.
#[derive(Debug, thiserror::Error)]
#[error("recorded build stream {path}: line {line}: {message}")]
pub struct RecordingError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Appends every stream item to the file named by `LAYERBENCH_RECORD_STREAM`, when set.
pub struct Recorder {
    file: Option<std::fs::File>,
}

impl Recorder {
    pub fn from_env() -> Recorder {
        let file = std::env::var_os("LAYERBENCH_RECORD_STREAM")
            .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        Recorder { file }
    }

    pub fn record(&mut self, item: &StreamItem) {
        if let (Some(f), Ok(line)) = (self.file.as_mut(), serde_json::to_string(item)) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// How many lines of a failing step's own output a failure keeps.
pub const ERROR_LOG_LINES: usize = 40;

/// How much of a step's output is kept while it runs (its tail), enough for `ERROR_LOG_LINES` long lines.
const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// Step reports collected from either builder's stream.
#[derive(Debug, Default)]
pub struct BuildStream {
    order: Vec<String>,
    by_key: HashMap<String, StepReport>,
    legacy_current: Option<String>,
    failure: Option<BuildFailure>,
    /// Each step's own output so far (its tail), by key: BuildKit's vertex logs, the legacy builder's lines between its markers.
    output: HashMap<String, String>,
}

/// Vertexes that are not Dockerfile steps.
fn is_internal(name: &str) -> bool {
    name.starts_with("[internal]") || name.starts_with("exporting") || name.starts_with("naming") || name.starts_with("copy /context")
}

impl BuildStream {
    /// Reads a whole recorded stream (JSON lines of [`StreamItem`]); `path` names the file in errors.
    pub fn from_recording(text: &str, path: &Path) -> Result<BuildStream, RecordingError> {
        let mut s = BuildStream::default();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let item: StreamItem = serde_json::from_str(line).map_err(|e| RecordingError {
                path: path.to_path_buf(),
                line: n + 1,
                message: crate::toml_lines::one_line(&e.to_string()),
            })?;
            s.push(&item, &mut |_| {});
        }
        Ok(s)
    }

    /// Takes one item; `progress` sees each step as it completes.
    pub fn push(&mut self, item: &StreamItem, progress: &mut dyn FnMut(&StepReport)) {
        match item {
            StreamItem::Vertex {
                digest,
                name,
                cached,
                started_unix_ms,
                completed_unix_ms,
                error,
            } => self.vertex(digest, name, *cached, *started_unix_ms, *completed_unix_ms, error, progress),
            StreamItem::Text { text, at_unix_ms } => self.legacy_text(text, *at_unix_ms, progress),
            StreamItem::Log { digest, data } => self.append_output(digest, data),
            StreamItem::Error { message } => {
                let message = format!("{}{}", message.trim(), known_limit(message).unwrap_or_default());
                let key = self.failing_step();
                let log = key.as_ref().map(|k| self.output_tail(k)).unwrap_or_default();
                let step = key.as_ref().and_then(|k| self.by_key.get(k)).map_or_else(|| "(before the first step)".to_string(), |s| s.name.clone());
                if let Some(s) = key.as_ref().and_then(|k| self.by_key.get_mut(k)) {
                    s.error.get_or_insert_with(|| message.clone());
                }
                self.failure = Some(BuildFailure { step, message, log });
            }
        }
    }

    pub fn failure(&self) -> Option<&BuildFailure> {
        self.failure.as_ref()
    }

    /// Adds to step `key`'s output, keeping its tail.
    fn append_output(&mut self, key: &str, data: &str) {
        let kept = self.output.entry(key.to_string()).or_default();
        kept.push_str(data);
        if kept.len() > OUTPUT_TAIL_BYTES {
            let mut cut = kept.len() - OUTPUT_TAIL_BYTES;
            while !kept.is_char_boundary(cut) {
                cut += 1;
            }
            kept.drain(..cut);
        }
    }

    /// The last `ERROR_LOG_LINES` lines step `key` printed (a line rewritten with `\r` as it ended; blank lines
    /// at the end dropped).
    fn output_tail(&self, key: &str) -> Vec<String> {
        let Some(text) = self.output.get(key) else { return Vec::new() };
        let mut lines: Vec<String> = text.lines().map(|l| l.rsplit('\r').find(|part| !part.trim().is_empty()).unwrap_or("").trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let skip = lines.len().saturating_sub(ERROR_LOG_LINES);
        lines.split_off(skip)
    }

    #[allow(clippy::too_many_arguments)]
    fn vertex(
        &mut self,
        digest: &str,
        name: &str,
        cached: bool,
        started: Option<u64>,
        completed: Option<u64>,
        error: &str,
        progress: &mut dyn FnMut(&StepReport),
    ) {
        if is_internal(name) {
            return;
        }
        if !self.by_key.contains_key(digest) {
            self.order.push(digest.to_string());
        }
        let step = self.by_key.entry(digest.to_string()).or_insert_with(|| StepReport {
            name: name.to_string(),
            cached: false,
            started_unix_ms: None,
            completed_unix_ms: None,
            error: None,
        });
        let was_done = step.completed_unix_ms.is_some();
        step.cached |= cached;
        step.started_unix_ms = step.started_unix_ms.or(started);
        step.completed_unix_ms = completed.or(step.completed_unix_ms);
        if !error.is_empty() {
            step.error = Some(error.to_string());
        }
        if !was_done && step.completed_unix_ms.is_some() {
            progress(step);
        }
    }

    fn legacy_text(&mut self, text: &str, at: u64, progress: &mut dyn FnMut(&StepReport)) {
        for line in text.lines() {
            if line.starts_with("Step ") {
                self.close_legacy(at, progress);
                let key = format!("legacy-{}", self.order.len());
                self.order.push(key.clone());
                self.by_key.insert(
                    key.clone(),
                    StepReport {
                        name: line.trim().to_string(),
                        cached: false,
                        started_unix_ms: Some(at),
                        completed_unix_ms: None,
                        error: None,
                    },
                );
                self.legacy_current = Some(key);
            } else if line.trim() == "---> Using cache" {
                if let Some(step) = self.legacy_current.as_ref().and_then(|k| self.by_key.get_mut(k)) {
                    step.cached = true;
                }
            } else if line.starts_with("Successfully built") {
                self.close_legacy(at, progress);
            } else if let Some(key) = self.legacy_current.clone().filter(|_| !is_legacy_marker(line)) {
                self.append_output(&key, &format!("{line}\n"));
            }
        }
    }

    fn close_legacy(&mut self, at: u64, progress: &mut dyn FnMut(&StepReport)) {
        if let Some(step) = self.legacy_current.take().and_then(|k| self.by_key.get_mut(&k)) {
            step.completed_unix_ms = Some(at);
            progress(step);
        }
    }

    /// The key of the step the build failed at.
    fn failing_step(&self) -> Option<String> {
        let step = |k: &&String| self.by_key.get(*k);
        self.order
            .iter()
            .find(|k| step(k).is_some_and(|s| s.error.is_some()))
            .or(self.legacy_current.as_ref())
            // BuildKit: the step that started and never completed.
            .or_else(|| self.order.iter().find(|k| step(k).is_some_and(|s| s.started_unix_ms.is_some() && s.completed_unix_ms.is_none())))
            .or_else(|| self.order.last())
            .cloned()
    }

    /// The steps in the order the builder first reported them.
    pub fn finish(mut self) -> Vec<StepReport> {
        let now = crate::results::unix_ms_now();
        if let Some(step) = self.legacy_current.take().and_then(|k| self.by_key.get_mut(&k)) {
            step.completed_unix_ms.get_or_insert(now);
        }
        self.order.iter().filter_map(|k| self.by_key.remove(k)).collect()
    }
}

/// The legacy builder's own lines within a step (` ---> Running in …`, ` ---> 1a2b…`, `Removing intermediate container …`), not the step's output.
fn is_legacy_marker(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("---> ") || t.starts_with("Removing intermediate container") || t.starts_with("Successfully tagged")
}

/// What an engine's build error means when it is a limit layerbench knows of, to append to it.
fn known_limit(message: &str) -> Option<&'static str> {
    // Docker 26's BuildKit on the containerd image store cannot read a context uploaded to `/build` as a tar: it
    // looks the upload up as a host named `build-context-…`. Through the build's session (the default) it works.
    (message.contains("failed to read downloaded context") && message.contains("build-context-")).then_some(
        " (on the containerd image store BuildKit cannot read a context uploaded as a tar: build with \
         `--context-transfer session`, the default, which sends it through the build's session as the Docker CLI does)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_the_containerd_store_cannot_read_is_named_as_a_known_limit() {
        let mut stream = BuildStream::default();
        let message = "failed to read downloaded context: failed to load cache key: Get \"http://build-context-k8n\": dial tcp: lookup build-context-k8n: no such host";
        stream.push(&StreamItem::Error { message: format!("{message}\n") }, &mut |_| {});
        let failure = stream.failure().expect("a failure");
        assert_eq!(failure.step, "(before the first step)");
        assert!(failure.message.starts_with(message) && failure.message.contains("--context-transfer session"), "{}", failure.message);
        let mut other = BuildStream::default();
        other.push(&StreamItem::Error { message: "exit code: 2".into() }, &mut |_| {});
        assert_eq!(other.failure().map(|f| f.message.as_str()), Some("exit code: 2"));
    }

    #[test]
    fn a_bad_line_of_a_recorded_stream_names_the_file_and_the_line() {
        let text = "{\"type\":\"error\",\"message\":\"boom\"}\n\n{\"type\":\"text\",\"text\":1}\n";
        let e = BuildStream::from_recording(text, Path::new("streams/x.jsonl")).err().unwrap().to_string();
        assert!(e.contains("streams/x.jsonl") && e.contains("line 3: "), "{e}");
        let s = BuildStream::from_recording(&text.replace("\"text\":1", "\"text\":\"Step 1/1 : FROM x\",\"at_unix_ms\":5"), Path::new("x")).unwrap();
        assert_eq!(s.failure().map(|f| f.message.as_str()), Some("boom"));
    }

    fn vertex(digest: &str, name: &str, error: &str, done: bool) -> StreamItem {
        StreamItem::Vertex {
            digest: digest.into(),
            name: name.into(),
            cached: false,
            started_unix_ms: Some(1),
            completed_unix_ms: done.then_some(2),
            error: error.into(),
        }
    }

    #[test]
    fn a_failing_buildkit_step_keeps_its_own_last_40_lines_not_another_step_s() {
        let mut stream = BuildStream::default();
        stream.push(&vertex("a", "[2/3] RUN go mod download", "", true), &mut |_| {});
        stream.push(&StreamItem::Log { digest: "a".into(), data: "downloaded\n".into() }, &mut |_| {});
        stream.push(&vertex("b", "[3/3] RUN make build", "", false), &mut |_| {});
        let lines: String = (1..=50).map(|n| format!("line {n}\n")).collect();
        // Output arrives in chunks that cut lines; a progress line is rewritten with `\r`.
        let (head, tail) = lines.split_at(101);
        stream.push(&StreamItem::Log { digest: "b".into(), data: head.into() }, &mut |_| {});
        stream.push(&StreamItem::Log { digest: "b".into(), data: format!("{tail}10%\r100%\nmake: not found\n\n") }, &mut |_| {});
        stream.push(&vertex("b", "[3/3] RUN make build", "process \"/bin/sh -c make build\" did not complete successfully: exit code: 127", true), &mut |_| {});
        stream.push(&StreamItem::Error { message: "exit code: 127".into() }, &mut |_| {});
        let failure = stream.failure().expect("a failure");
        assert_eq!(failure.step, "[3/3] RUN make build");
        assert_eq!(failure.log.len(), ERROR_LOG_LINES);
        assert_eq!(failure.log.first().map(String::as_str), Some("line 13"));
        assert_eq!(failure.log[failure.log.len() - 2..], ["100%".to_string(), "make: not found".to_string()]);
        assert!(!failure.log.iter().any(|l| l == "downloaded"));
    }

    #[test]
    fn a_failing_legacy_step_keeps_its_lines_without_the_builder_s_markers() {
        let mut stream = BuildStream::default();
        let text = |t: &str| StreamItem::Text { text: t.into(), at_unix_ms: 1 };
        for t in ["Step 1/2 : FROM golang:1.23\n", " ---> 04558db92aa9\n", "Step 2/2 : RUN make build\n", " ---> Running in 5f3c\n", "/bin/sh: 1: make: not found\n"] {
            stream.push(&text(t), &mut |_| {});
        }
        stream.push(&StreamItem::Error { message: "The command '/bin/sh -c make build' returned a non-zero code: 127".into() }, &mut |_| {});
        let failure = stream.failure().expect("a failure");
        assert_eq!(failure.step, "Step 2/2 : RUN make build");
        assert_eq!(failure.log, ["/bin/sh: 1: make: not found"]);
    }
}
