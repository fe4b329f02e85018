//! The body of one proxy answer: a file read a chunk at a time (or bytes in memory), paced to the bandwidth cap when there is one, and logged once it is sent or abandoned.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::goproxy::content::{Content, FileChunks};
use crate::goproxy::log::{ProxyLog, ProxyRequest};

/// The size of the pieces a paced body is sent in.
const PACED_CHUNK: usize = 16 * 1024;

/// An answer's body. A file is read one chunk at a time, as the connection
/// takes the chunk before it, so an answer holds at most a chunk of its file
/// (plus what hyper has queued to write) whatever the file's size; bytes in
/// memory are sent as they are. Its log entry is written when the last byte
/// is handed to the connection, or when the body is dropped unsent (a `HEAD`
/// request, a client that went away, a file that could not be read), with
/// the bytes handed over so far.
pub struct AnswerBody {
    /// Read and not sent yet: the whole of an answer in memory, the last chunk read of a file.
    pending: Bytes,
    /// The rest of the file, read once `pending` is sent (`None` for an answer in memory).
    file: Option<FileChunks>,
    /// The body bytes not sent yet, in `pending` and the file together.
    remaining: u64,
    bytes_per_sec: Option<u64>,
    /// When pacing began (the first poll), and the pause before the next piece.
    paced_from: Option<tokio::time::Instant>,
    pause: Option<Pin<Box<Sleep>>>,
    sent: u64,
    entry: Option<(ProxyRequest, ProxyLog, Instant)>,
}

impl AnswerBody {
    /// `entry` is logged with its `bytes` and `duration_ms` (from `started`) filled in.
    pub fn new(content: Content, bytes_per_sec: Option<u64>, entry: ProxyRequest, log: ProxyLog, started: Instant) -> Self {
        let (pending, file, remaining) = match content {
            Content::Memory(bytes) => {
                let len = bytes.len() as u64;
                (bytes, None, len)
            }
            Content::File(file) => {
                let (chunks, len) = file.into_chunks();
                (Bytes::new(), Some(chunks), len)
            }
        };
        AnswerBody {
            pending,
            file,
            remaining,
            bytes_per_sec: bytes_per_sec.filter(|b| *b > 0),
            paced_from: None,
            pause: None,
            sent: 0,
            entry: Some((entry, log, started)),
        }
    }

    fn finish(&mut self) {
        if let Some((mut entry, log, started)) = self.entry.take() {
            entry.bytes = self.sent;
            entry.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            log.push(entry);
        }
    }

    /// Makes sure bytes are pending: the file's next chunk once the last one is sent.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let short = |remaining: u64| io::Error::new(io::ErrorKind::UnexpectedEof, format!("the file ended {remaining} bytes before the length it had when opened"));
        let Some(file) = self.file.as_mut() else {
            return Poll::Ready(Err(short(self.remaining)));
        };
        match Pin::new(file).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.pending = chunk;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
            Poll::Ready(None) => Poll::Ready(Err(short(self.remaining))),
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    /// A file that could not be read to its end: hyper closes the connection
    /// (the client sees a body shorter than its `Content-Length`).
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            this.finish();
            return Poll::Ready(None);
        }
        match this.poll_pending(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.file = None;
                this.finish();
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Ok(())) => {}
        }
        let piece = match this.bytes_per_sec {
            None => this.pending.len(),
            Some(bps) => {
                let piece = this.pending.len().min(PACED_CHUNK);
                // A piece leaves when it and every byte before it are due at the capped rate.
                let from = *this.paced_from.get_or_insert_with(tokio::time::Instant::now);
                let due = from + Duration::from_secs_f64((this.sent + piece as u64) as f64 / bps as f64);
                let pause = this.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
                piece
            }
        };
        let data = this.pending.split_to(piece);
        this.sent += piece as u64;
        this.remaining = this.remaining.saturating_sub(piece as u64);
        if this.remaining == 0 {
            this.file = None;
            this.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goproxy::content::{OpenFile, FILE_CHUNK_BYTES};
    use crate::goproxy::request::RequestKind;
    use crate::goproxy::source::ServedFrom;
    use http_body_util::BodyExt;

    fn entry() -> ProxyRequest {
        ProxyRequest {
            path: "/m/@v/v1.0.0.zip".to_string(),
            module: Some("m".to_string()),
            version: Some("v1.0.0".to_string()),
            kind: RequestKind::Zip,
            status: 200,
            bytes: 0,
            at_unix_ms: 0,
            duration_ms: 0.0,
            served_from: ServedFrom::Store,
            lane: String::new(),
        }
    }

    fn in_memory(len: usize) -> Content {
        Content::Memory(Bytes::from(vec![1u8; len]))
    }

    /// A file of `len` bytes in a folder of its own, opened.
    async fn opened(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Content) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.0.0.zip");
        std::fs::write(&path, (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        let file = OpenFile::open(&path).await.unwrap().expect("the file is there");
        (dir, path, Content::File(file))
    }

    #[tokio::test]
    async fn an_unpaced_body_in_memory_is_one_frame_and_logged_with_its_bytes() {
        let log = ProxyLog::default();
        let mut body = AnswerBody::new(in_memory(100_000), None, entry(), log.clone(), Instant::now());
        assert_eq!(body.size_hint().exact(), Some(100_000));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(Bytes::len), Some(100_000));
        assert!(body.is_end_stream());
        assert_eq!(log.snapshot()[0].bytes, 100_000, "logged as soon as the last byte is handed over");
        drop(body);
        assert_eq!(log.len(), 1, "and only once");
    }

    #[tokio::test]
    async fn a_file_is_sent_in_chunks_of_its_exact_length_and_logged_with_its_bytes() {
        let log = ProxyLog::default();
        let len = 3 * FILE_CHUNK_BYTES + 123;
        let (_dir, path, content) = opened(len).await;
        let mut body = AnswerBody::new(content, None, entry(), log.clone(), Instant::now());
        assert_eq!(body.size_hint().exact(), Some(len as u64), "the Content-Length comes from the file's metadata");
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= FILE_CHUNK_BYTES, "a frame of {} bytes", data.len());
            received.extend_from_slice(&data);
        }
        assert_eq!(received, std::fs::read(&path).unwrap());
        assert!(body.is_end_stream());
        assert_eq!(log.snapshot()[0].bytes, len as u64);
        drop(body);
        assert_eq!(log.len(), 1, "and only once");
    }

    #[tokio::test]
    async fn a_paced_body_takes_its_size_over_the_bandwidth() {
        for file in [false, true] {
            let log = ProxyLog::default();
            let (_dir, _path, content) = opened(48 * 1024).await;
            let content = if file { content } else { in_memory(48 * 1024) };
            let body = AnswerBody::new(content, Some(256 * 1024), entry(), log.clone(), Instant::now());
            let started = Instant::now();
            let collected = body.collect().await.unwrap().to_bytes();
            let took = started.elapsed();
            assert_eq!(collected.len(), 48 * 1024);
            // 48 KiB at 256 KiB/s is 187.5 ms.
            assert!(took >= Duration::from_millis(180), "took only {took:?} (from a file: {file})");
            assert_eq!(log.snapshot()[0].bytes, 48 * 1024);
            assert!(log.snapshot()[0].duration_ms >= 180.0);
        }
    }

    #[tokio::test]
    async fn a_body_dropped_unsent_is_logged_with_what_was_sent() {
        for file in [false, true] {
            let log = ProxyLog::default();
            let (_dir, _path, content) = opened(40 * 1024).await;
            let content = if file { content } else { in_memory(40 * 1024) };
            let mut body = AnswerBody::new(content, Some(1024 * 1024), entry(), log.clone(), Instant::now());
            let first = body.frame().await.unwrap().unwrap();
            assert_eq!(first.data_ref().map(Bytes::len), Some(PACED_CHUNK), "from a file: {file}");
            assert!(log.is_empty());
            drop(body);
            assert_eq!(log.snapshot()[0].bytes, PACED_CHUNK as u64);
        }
    }

    #[tokio::test]
    async fn a_file_cut_short_after_it_was_opened_ends_the_body_with_an_error_logged_with_what_was_sent() {
        let log = ProxyLog::default();
        let (_dir, path, content) = opened(2 * FILE_CHUNK_BYTES).await;
        let mut body = AnswerBody::new(content, None, entry(), log.clone(), Instant::now());
        let first = body.frame().await.unwrap().unwrap();
        let sent = first.data_ref().map_or(0, Bytes::len);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(sent as u64).unwrap();
        let mut total = sent;
        // Whatever was read before the cut is sent; the body then ends with an error, never early and quietly.
        while let Ok(more) = body.frame().await.expect("an error, not an early end") {
            total += more.data_ref().map_or(0, Bytes::len);
        }
        assert!(total < 2 * FILE_CHUNK_BYTES);
        assert_eq!(log.snapshot()[0].bytes, total as u64);
    }
}
