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

/// Step reports collected from either builder's stream.
#[derive(Debug, Default)]
pub struct BuildStream {
    order: Vec<String>,
    by_key: HashMap<String, StepReport>,
    legacy_current: Option<String>,
    failure: Option<BuildFailure>,
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
            StreamItem::Error { message } => {
                let message = format!("{}{}", message.trim(), known_limit(message).unwrap_or_default());
                let step = self.failing_step().unwrap_or_else(|| "(before the first step)".into());
                if let Some(s) = self.by_key.values_mut().find(|s| s.name == step) {
                    s.error.get_or_insert_with(|| message.clone());
                }
                self.failure = Some(BuildFailure { step, message });
            }
        }
    }

    pub fn failure(&self) -> Option<&BuildFailure> {
        self.failure.as_ref()
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
            }
        }
    }

    fn close_legacy(&mut self, at: u64, progress: &mut dyn FnMut(&StepReport)) {
        if let Some(step) = self.legacy_current.take().and_then(|k| self.by_key.get_mut(&k)) {
            step.completed_unix_ms = Some(at);
            progress(step);
        }
    }

    fn failing_step(&self) -> Option<String> {
        self.order
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .find(|s| s.error.is_some())
            .or_else(|| self.legacy_current.as_ref().and_then(|k| self.by_key.get(k)))
            .or_else(|| {
                // BuildKit: the step that started and never completed.
                self.order
                    .iter()
                    .filter_map(|k| self.by_key.get(k))
                    .find(|s| s.started_unix_ms.is_some() && s.completed_unix_ms.is_none())
            })
            .or_else(|| self.order.last().and_then(|k| self.by_key.get(k)))
            .map(|s| s.name.clone())
    }

    /// The steps in the order the builder first reported them.
    pub fn finish(mut self) -> Vec<StepReport> {
        let now = super::unix_ms_now();
        if let Some(step) = self.legacy_current.take().and_then(|k| self.by_key.get_mut(&k)) {
            step.completed_unix_ms.get_or_insert(now);
        }
        self.order.iter().filter_map(|k| self.by_key.remove(k)).collect()
    }
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
}

