//! The module proxy's throughput on loopback, unshaped, side by side with a bare hyper server answering the same bytes from memory.
//!
//! A store in a temporary folder holds one module version with a large zip;
//! several clients, each on one kept-alive HTTP/1.1 connection, ask for it
//! over and over for a few seconds, first from the proxy (port 48235), then
//! from the bare server (48236), alternating rounds, in one process. The
//! bare server is the ceiling of loopback HTTP with hyper on this machine.
//! Prints Gbit/s of each and their ratio. Target: the proxy >= 1 Gbit/s, so it
//! is never a build's bottleneck. Needs no engine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use tokio::net::{TcpListener, TcpStream};

const PROXY_PORT: u16 = 48235;
const BARE_PORT: u16 = 48236;
const ZIP_BYTES: usize = 48 * 1024 * 1024;
const CLIENTS: usize = 4;
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;
const TARGET: &str = "/example.com/big/@v/v1.0.0.zip";
const TARGET_GBITS: f64 = 1.0;

/// Bytes that do not repeat (a zip's are compressed), from a small xorshift generator.
fn zip_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(ZIP_BYTES + 8);
    while out.len() < ZIP_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(ZIP_BYTES);
    out
}

/// A GOPROXY-layout store with `example.com/big@v1.0.0` whose zip is `zip`.
fn write_store(root: &Path, zip: &[u8]) -> std::io::Result<()> {
    let v = root.join("example.com/big/@v");
    std::fs::create_dir_all(&v)?;
    std::fs::write(v.join("list"), "v1.0.0\n")?;
    std::fs::write(v.join("v1.0.0.info"), r#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#)?;
    std::fs::write(v.join("v1.0.0.mod"), "module example.com/big\n")?;
    std::fs::write(v.join("v1.0.0.zip"), zip)
}

/// A hyper server that answers every request with `body` from memory, until the task is aborted.
async fn bare_server(addr: SocketAddr, body: Bytes) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.expect("binding the bare server's port");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    })
}

/// One client on one kept-alive connection: GETs the zip until `deadline`, returns the body bytes received.
async fn client(addr: SocketAddr, deadline: Instant) -> u64 {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let mut received = 0u64;
    while Instant::now() < deadline {
        let request = Request::get(TARGET).header(hyper::header::HOST, addr.to_string()).body(Empty::<Bytes>::new()).expect("a request");
        let response = sender.send_request(request).await.expect("an answer");
        assert_eq!(response.status(), 200, "{addr} answered {}", response.status());
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.expect("a body frame").data_ref() {
                bytes += data.len() as u64;
            }
        }
        assert_eq!(bytes, ZIP_BYTES as u64, "{addr} sent a short body");
        received += bytes;
    }
    received
}

/// Bytes received by all clients together and the time they took (each finishes its last answer after the deadline).
async fn round(addr: SocketAddr) -> (u64, Duration) {
    let started = Instant::now();
    let deadline = started + ROUND;
    let clients: Vec<_> = (0..CLIENTS).map(|_| tokio::spawn(client(addr, deadline))).collect();
    let mut total = 0;
    for c in clients {
        total += c.await.expect("a client");
    }
    (total, started.elapsed())
}

fn gbits(bytes: u64, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e9
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let zip = zip_bytes();
    write_store(dir.path(), &zip).expect("writing the store");
    rt.block_on(async {
        let proxy = ProxyServer::start(ProxyConfig::loopback(dir.path(), PROXY_PORT)).await.expect("the module proxy");
        let bare_addr = SocketAddr::from(([127, 0, 0, 1], BARE_PORT));
        let bare = bare_server(bare_addr, Bytes::from(zip)).await;
        let (mut proxy_total, mut bare_total) = ((0, Duration::ZERO), (0, Duration::ZERO));
        for _ in 0..ROUNDS {
            for (addr, total) in [(proxy.addr(), &mut proxy_total), (bare_addr, &mut bare_total)] {
                let (bytes, took) = round(addr).await;
                total.0 += bytes;
                total.1 += took;
            }
        }
        let (ours, ceiling) = (gbits(proxy_total.0, proxy_total.1), gbits(bare_total.0, bare_total.1));
        println!(
            "proxy throughput ({CLIENTS} kept-alive clients, {} MiB zip, {ROUNDS} alternating rounds of {} s each): \
             module proxy {ours:.2} Gbit/s, bare hyper from memory {ceiling:.2} Gbit/s, ratio {:.2} ({})",
            ZIP_BYTES / (1024 * 1024),
            ROUND.as_secs(),
            ours / ceiling,
            if ours >= TARGET_GBITS { "meets the 1 Gbit/s target" } else { "BELOW the 1 Gbit/s target" }
        );
        let requests = proxy.log().len();
        assert!(requests > 0, "the proxy logged no request");
        bare.abort();
        proxy.stop().await;
    });
}
