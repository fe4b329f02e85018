//! One HTTP/1.1 GET to a module proxy, its target sent exactly as given: how tests (and anyone checking a running proxy) ask it for a path.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("failed to connect to the module proxy at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("`{target}` cannot be sent as a request to {addr}: {source}")]
    Request {
        addr: SocketAddr,
        target: String,
        source: hyper::http::Error,
    },
    #[error("the module proxy at {addr} did not answer `{target}`: {source}")]
    Answer { addr: SocketAddr, target: String, source: hyper::Error },
}

/// What the proxy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `target` (a path with an optional query, sent verbatim, so escapes
/// and `..` reach the proxy as written) over a connection of its own, with
/// `headers` added to `Host`.
pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Result<Answer, GetError> {
    let answer = |source| GetError::Answer {
        addr,
        target: target.to_string(),
        source,
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| GetError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(answer)?;
    let driving = tokio::spawn(connection);
    let mut request = hyper::Request::get(target).header(hyper::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|source| GetError::Request {
        addr,
        target: target.to_string(),
        source,
    })?;
    let response = sender.send_request(request).await.map_err(answer)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(answer)?.to_bytes().to_vec();
    drop(sender);
    let _ = driving.await;
    Ok(Answer { status, body })
}
