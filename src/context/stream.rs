//! A build context streamed as it is read: a thread walks the folder and writes the tar into a bounded channel of chunks, which becomes a build's body; memory stays bounded whatever the context's size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

use super::archive::{ContextPlan, SentContext};
use super::{ContextError, IgnoreDialect};
use crate::results::Builder;

/// The size of one chunk of the tar handed to the engine.
const CHUNK_BYTES: usize = 256 * 1024;

/// How many chunks may wait for the engine: with the one being filled, at most about 1.25 MiB of the context is in memory.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A build context on its way: the tar's chunks as the walk makes them, and the walk's end.
pub struct ContextStream {
    dockerfile: String,
    builder: Builder,
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    end: WalkEnd,
}

impl std::fmt::Debug for ContextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextStream")
            .field("context", &self.end.context)
            .field("dockerfile", &self.dockerfile)
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

/// The end of a context walk: what was sent, or the error that stopped it, and how long the walk took.
#[derive(Debug)]
pub struct WalkEnd {
    context: PathBuf,
    end: oneshot::Receiver<(Result<SentContext, ContextError>, Duration)>,
}

/// Starts sending `context_dir` as `build_context` tars it (the same walk and
/// the same bytes), read and written chunk by chunk on a thread of its own as
/// the engine takes them. Errors found before the walk (no Dockerfile, a bad
/// `.dockerignore`) come back at once; one met during the walk ends the stream
/// with an error and comes back from `WalkEnd::sent`, naming the path.
/// `dialect` is that of the CLI whose context this one stands for: the
/// engine's (`IgnoreDialect::of_engine`).
pub fn stream_context(context_dir: &Path, dockerfile: &Path, builder: Builder, dialect: IgnoreDialect) -> Result<ContextStream, ContextError> {
    let plan = ContextPlan::new(context_dir, dockerfile, builder, dialect)?;
    let (chunks, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (ended, end) = oneshot::channel();
    let context = context_dir.to_path_buf();
    let dockerfile = plan.dockerfile.clone();
    let walked = context.clone();
    std::thread::Builder::new()
        .name("layerbench-context".into())
        .spawn(move || {
            let mut sink = ChunkSink {
                buffer: BytesMut::with_capacity(CHUNK_BYTES),
                chunks,
                abandoned: false,
            };
            let walking = Instant::now();
            let result = match plan.write(&mut sink) {
                Ok(sent) => Ok(sent),
                Err(_) if sink.abandoned => Err(ContextError::NotRead(walked)),
                Err(e) => {
                    // The body ends in an error, so the engine never takes a cut tar for a whole one.
                    let _ = sink.chunks.blocking_send(Err(std::io::Error::other(e.to_string())));
                    Err(e)
                }
            };
            let _ = ended.send((result, walking.elapsed()));
        })
        .map_err(|source| ContextError::Walker { path: context.clone(), source })?;
    Ok(ContextStream {
        dockerfile,
        builder,
        chunks: received,
        end: WalkEnd { context, end },
    })
}

impl ContextStream {
    /// The name to pass as the build's `dockerfile` option.
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }

    /// The builder the context was made for.
    pub fn builder(&self) -> Builder {
        self.builder
    }

    /// The folder being sent.
    pub fn context_dir(&self) -> &Path {
        &self.end.context
    }

    /// The tar's chunks, to send as a request body (an error item when the walk failed), and the walk's end.
    pub fn into_body(self) -> (impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, WalkEnd) {
        let chunks = futures_util::stream::unfold(self.chunks, |mut chunks| async move { chunks.recv().await.map(|chunk| (chunk, chunks)) });
        (chunks, self.end)
    }

    /// The whole tar in memory and what was sent (for tests and small contexts).
    pub async fn collect(self) -> Result<(Vec<u8>, SentContext), ContextError> {
        let (chunks, end) = self.into_body();
        let mut chunks = Box::pin(chunks);
        let mut tar = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
            match chunk {
                Ok(bytes) => tar.extend_from_slice(&bytes),
                Err(_) => break,
            }
        }
        drop(chunks);
        let sent = end.sent().await?;
        Ok((tar, sent))
    }
}

impl WalkEnd {
    /// Waits for the walk to end: what it sent, or the error that stopped it
    /// (`ContextError::NotRead` when the body was dropped before its end).
    pub async fn sent(self) -> Result<SentContext, ContextError> {
        self.timed().await.0
    }

    /// As `sent`, with how long the walk took on its thread, waits for the
    /// engine to take its chunks included (`None` when it stopped before
    /// reporting).
    pub async fn timed(self) -> (Result<SentContext, ContextError>, Option<Duration>) {
        match self.end.await {
            Ok((result, took)) => (result, Some(took)),
            Err(_) => (
                Err(ContextError::Io {
                    path: self.context,
                    source: std::io::Error::other("the walk stopped before its end"),
                }),
                None,
            ),
        }
    }

    /// The folder being sent.
    pub fn context_dir(&self) -> &Path {
        &self.context
    }
}

/// Cuts the tar into chunks and hands them to the channel, waiting while it is full.
struct ChunkSink {
    buffer: BytesMut,
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
    /// The receiving end was dropped: nobody reads the context any more.
    abandoned: bool,
}

impl ChunkSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.buffer.reserve(CHUNK_BYTES);
        if self.chunks.blocking_send(Ok(chunk)).is_err() {
            self.abandoned = true;
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine stopped reading the build context"));
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn the_walk_s_end_says_what_was_sent_and_how_long_the_walk_took() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("main.go"), "package main\n").unwrap();
        let (body, end) = stream_context(dir.path(), Path::new("Dockerfile"), Builder::Legacy, IgnoreDialect::default()).unwrap().into_body();
        let chunks: Vec<std::io::Result<Bytes>> = body.collect().await;
        assert!(!chunks.is_empty() && chunks.iter().all(|c| c.is_ok()));
        let (sent, took) = end.timed().await;
        assert_eq!(sent.unwrap().files, ["Dockerfile", "main.go"]);
        assert!(took.is_some(), "a walk that ended reports its time");
    }
}
