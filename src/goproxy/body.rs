//! The body of one proxy answer: paced to the bandwidth cap when there is one (else sent in one piece), and logged once it is sent or abandoned.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::goproxy::log::{ProxyLog, ProxyRequest};

/// The size of the pieces a paced body is sent in.
const PACED_CHUNK: usize = 16 * 1024;

/// An answer's body; its log entry is written when the last byte is handed
/// to the connection, or when the body is dropped unsent (a `HEAD` request,
/// a client that went away), with the bytes handed over so far.
pub struct AnswerBody {
    rest: Bytes,
    bytes_per_sec: Option<u64>,
    /// When pacing began (the first poll), and the pause before the next piece.
    paced_from: Option<tokio::time::Instant>,
    pause: Option<Pin<Box<Sleep>>>,
    sent: u64,
    entry: Option<(ProxyRequest, ProxyLog, Instant)>,
}

impl AnswerBody {
    /// `entry` is logged with its `bytes` and `duration_ms` (from `started`) filled in.
    pub fn new(body: Bytes, bytes_per_sec: Option<u64>, entry: ProxyRequest, log: ProxyLog, started: Instant) -> Self {
        AnswerBody {
            rest: body,
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
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            this.finish();
            return Poll::Ready(None);
        }
        let piece = match this.bytes_per_sec {
            None => this.rest.len(),
            Some(bps) => {
                let piece = this.rest.len().min(PACED_CHUNK);
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
        let data = this.rest.split_to(piece);
        this.sent += piece as u64;
        if this.rest.is_empty() {
            this.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
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

    #[tokio::test]
    async fn an_unpaced_body_is_one_frame_and_logged_with_its_bytes() {
        let log = ProxyLog::default();
        let mut body = AnswerBody::new(Bytes::from(vec![1u8; 100_000]), None, entry(), log.clone(), Instant::now());
        assert_eq!(body.size_hint().exact(), Some(100_000));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(Bytes::len), Some(100_000));
        assert!(body.is_end_stream());
        assert_eq!(log.snapshot()[0].bytes, 100_000, "logged as soon as the last byte is handed over");
        drop(body);
        assert_eq!(log.len(), 1, "and only once");
    }

    #[tokio::test]
    async fn a_paced_body_takes_its_size_over_the_bandwidth() {
        let log = ProxyLog::default();
        let body = AnswerBody::new(Bytes::from(vec![1u8; 48 * 1024]), Some(256 * 1024), entry(), log.clone(), Instant::now());
        let started = Instant::now();
        let collected = body.collect().await.unwrap().to_bytes();
        let took = started.elapsed();
        assert_eq!(collected.len(), 48 * 1024);
        // 48 KiB at 256 KiB/s is 187.5 ms.
        assert!(took >= Duration::from_millis(180), "took only {took:?}");
        assert_eq!(log.snapshot()[0].bytes, 48 * 1024);
        assert!(log.snapshot()[0].duration_ms >= 180.0);
    }

    #[tokio::test]
    async fn a_body_dropped_unsent_is_logged_with_what_was_sent() {
        let log = ProxyLog::default();
        let mut body = AnswerBody::new(Bytes::from(vec![1u8; 40 * 1024]), Some(1024 * 1024), entry(), log.clone(), Instant::now());
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(Bytes::len), Some(PACED_CHUNK));
        assert!(log.is_empty());
        drop(body);
        assert_eq!(log.snapshot()[0].bytes, PACED_CHUNK as u64);
    }
}
