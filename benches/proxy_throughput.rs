//! The module proxy's throughput on loopback, unshaped, side by side with a bare hyper server answering the same bytes, and its peak memory under 64 concurrent clients.
//!
//! A store in a temporary folder holds module versions whose zips run from
//! 128 KiB to 48 MiB (pseudo-random bytes, as a zip's compressed ones are).
//! Two measurements, in rounds that alternate between the proxy (port 48235)
//! and a bare hyper server:
//!
//! 1. Many clients. 64 clients, each on one kept-alive HTTP/1.1 connection,
//!    download the `.mod` and `.zip` of four modules (zips of 16 MiB, 4 MiB,
//!    1 MiB and 128 KiB) over and over for a few seconds, from the proxy and
//!    from a bare server (48237) that streams the same files in the proxy's
//!    chunk size. The clients run in a child process (this bench started
//!    again), so this process holds only the two servers: its resident memory
//!    at its peak during the proxy's rounds, less its resident memory before
//!    the first round, is what 64 answers in flight cost the proxy (limit
//!    64 MB; a proxy that read whole files would grow by the files in flight,
//!    up to 64 × 16 MiB). Prints MB/s of each and their ratio (target: the
//!    proxy >= 0.6 × the bare server).
//! 2. Few clients. 4 clients ask for the 48 MiB zip, from the proxy and from
//!    a bare server (48236) answering it from memory: the ceiling of loopback
//!    HTTP with hyper on this machine. Prints Gbit/s of each and their ratio.
//!    Target: the proxy >= 1 Gbit/s, so it is never a build's bottleneck.
//!
//! The last line sums up the first measurement. Needs no engine; Linux (it
//! reads /proc/self/status).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use layerbench::goproxy::content::FILE_CHUNK_BYTES;
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::io::ReaderStream;

const PROXY_PORT: u16 = 48235;
const BARE_PORT: u16 = 48236;
const STREAMING_BARE_PORT: u16 = 48237;
const ZIP_BYTES: usize = 48 * 1024 * 1024;
const CLIENTS: usize = 4;
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;
const TARGET: &str = "/example.com/big/@v/v1.0.0.zip";
const TARGET_GBITS: f64 = 1.0;

/// The modules the many clients download, with their zips' sizes: an SDK, a library, two small packages.
const MANY_MODULES: [(&str, usize); 4] = [
    ("example.com/sdk", 16 * 1024 * 1024),
    ("example.com/lib", 4 * 1024 * 1024),
    ("example.com/util", 1024 * 1024),
    ("example.com/tiny", 128 * 1024),
];
const MANY_CLIENTS: usize = 64;
const MANY_ROUNDS: usize = 5;
const MEMORY_LIMIT_MB: f64 = 64.0;
const RATIO_TARGET: f64 = 0.6;
/// Set in the child process that runs the many clients: the address they download from.
const CLIENTS_OF: &str = "LAYERBENCH_PROXY_BENCH_CLIENTS_OF";
/// How often the resident size is sampled during a round.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Writes `len` bytes that do not repeat (a zip's are compressed) to `path`,
/// from a small xorshift generator started at `seed`, a block at a time (no
/// whole zip is ever in this process's memory before the memory is measured).
fn write_pseudo_random(path: &Path, len: usize, seed: u64) -> std::io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut x = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = Vec::with_capacity(BLOCK + 8);
    let mut left = len;
    while left > 0 {
        block.clear();
        while block.len() < BLOCK.min(left) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            block.extend_from_slice(&x.to_le_bytes());
        }
        block.truncate(left.min(block.len()));
        file.write_all(&block)?;
        left -= block.len();
    }
    file.flush()
}

/// Adds `module@v1.0.0` to the GOPROXY-layout store at `root`, with a zip of `zip_bytes`.
fn write_module(root: &Path, module: &str, zip_bytes: usize, seed: u64) -> std::io::Result<()> {
    let v = root.join(module).join("@v");
    std::fs::create_dir_all(&v)?;
    std::fs::write(v.join("list"), "v1.0.0\n")?;
    std::fs::write(v.join("v1.0.0.info"), r#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#)?;
    std::fs::write(v.join("v1.0.0.mod"), format!("module {module}\n\ngo 1.22\n"))?;
    write_pseudo_random(&v.join("v1.0.0.zip"), zip_bytes, seed)
}

/// The store both measurements read: `example.com/big` (the few clients') and the many clients' modules.
fn write_store(root: &Path) -> std::io::Result<()> {
    write_module(root, "example.com/big", ZIP_BYTES, 0x9E37_79B9_7F4A_7C15)?;
    for (i, (module, zip_bytes)) in MANY_MODULES.iter().enumerate() {
        write_module(root, module, *zip_bytes, 0x2545_F491_4F6C_DD1D + i as u64)?;
    }
    Ok(())
}

/// What the many clients ask for, in the go command's order: each module's `.mod`, then its `.zip`.
fn many_targets() -> Vec<String> {
    MANY_MODULES
        .iter()
        .flat_map(|(module, _)| ["mod", "zip"].map(|ext| format!("/{module}/@v/v1.0.0.{ext}")))
        .collect()
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

/// A hyper server that answers `GET /<path>` with the file `<root>/<path>`, opened with tokio and read in
/// the proxy's chunk size, with its `Content-Length`, until the task is aborted. It trusts its clients' paths.
async fn streaming_bare_server(addr: SocketAddr, root: PathBuf) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.expect("binding the streaming bare server's port");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let root = root.clone();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let path = root.join(request.uri().path().trim_start_matches('/'));
                async move {
                    let file = tokio::fs::File::open(&path).await?;
                    let len = file.metadata().await?.len();
                    let chunks = ReaderStream::with_capacity(file, FILE_CHUNK_BYTES).map_ok(Frame::data);
                    let mut response = Response::new(StreamBody::new(chunks));
                    response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
                    Ok::<_, std::io::Error>(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    })
}

/// A kept-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    sender
}

/// One GET over a kept-alive connection: the body bytes received, checked against the answer's `Content-Length`.
async fn download(sender: &mut SendRequest<Empty<Bytes>>, addr: SocketAddr, target: &str) -> u64 {
    let request = Request::get(target).header(HOST, addr.to_string()).body(Empty::<Bytes>::new()).expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200, "{addr} answered {} to {target}", response.status());
    let promised = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.expect("a body frame").data_ref() {
            bytes += data.len() as u64;
        }
    }
    assert_eq!(Some(bytes), promised, "{addr} sent a body unlike its Content-Length for {target}");
    bytes
}

/// One client on one kept-alive connection: GETs `targets` in turn, from the `first`, until `deadline`; returns the body bytes received.
async fn client(addr: SocketAddr, targets: Arc<Vec<String>>, first: usize, deadline: Instant) -> u64 {
    let mut sender = connect(addr).await;
    let mut received = 0u64;
    for target in targets.iter().cycle().skip(first) {
        if Instant::now() >= deadline {
            break;
        }
        received += download(&mut sender, addr, target).await;
    }
    received
}

/// `count` clients at once for one round: the body bytes they received together and the time they took
/// (each finishes its last answer after the deadline).
async fn round(addr: SocketAddr, count: usize, targets: &[String]) -> (u64, Duration) {
    let targets = Arc::new(targets.to_vec());
    let started = Instant::now();
    let deadline = started + ROUND;
    let clients: Vec<_> = (0..count).map(|i| tokio::spawn(client(addr, targets.clone(), i, deadline))).collect();
    let mut total = 0;
    for c in clients {
        total += c.await.expect("a client");
    }
    (total, started.elapsed())
}

/// In the child process: one round of the many clients against `addr`; prints `<bytes> <nanoseconds>`.
fn run_many_clients(addr: &str) {
    let addr: SocketAddr = addr.parse().expect("the clients' address");
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (bytes, took) = rt.block_on(round(addr, MANY_CLIENTS, &many_targets()));
    println!("{bytes} {}", took.as_nanos());
}

/// One round of the many clients, in this bench started again (their memory is not this process's).
async fn many_clients_round(addr: SocketAddr) -> (u64, Duration) {
    let bench = std::env::current_exe().expect("the bench's own path");
    let clients = tokio::process::Command::new(bench)
        .env(CLIENTS_OF, addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the clients' process");
    let output = clients.wait_with_output().await.expect("the clients' process");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the clients' process failed ({}): {text}", output.status);
    let numbers: Vec<u64> = text.split_whitespace().map(|n| n.parse().expect("a number from the clients' process")).collect();
    let [bytes, nanos] = numbers.as_slice() else {
        panic!("the clients' process printed `{text}`, not `<bytes> <nanoseconds>`")
    };
    (*bytes, Duration::from_nanos(*nanos))
}

/// A field of /proc/self/status in bytes: `VmRSS` (resident now) or `VmHWM` (resident at its peak).
fn resident(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Resets this process's peak resident size (VmHWM) to its resident size now (Linux >= 4.0); false when refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A thread that samples this process's resident size every [`SAMPLE_EVERY`] and keeps the highest.
struct ResidentSampler {
    highest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ResidentSampler {
    fn start() -> Self {
        let (highest, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (highest, stop) = (highest.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(now) = resident("VmRSS") {
                        highest.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        ResidentSampler { highest, stop, thread: Some(thread) }
    }

    /// The highest resident size seen since the last call (or the start); the next call's window begins now.
    fn take(&self) -> u64 {
        let now = resident("VmRSS").unwrap_or(0);
        self.highest.swap(now, Ordering::Relaxed).max(now)
    }
}

impl Drop for ResidentSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one server did over its rounds of the many clients.
#[derive(Debug, Default)]
struct Served {
    bytes: u64,
    took: Duration,
    /// This process's highest resident size during the server's rounds, in bytes.
    peak_resident: u64,
}

impl Served {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.took.as_secs_f64() / 1e6
    }
}

/// The many clients' measurement.
#[derive(Debug)]
struct ManyClients {
    proxy: Served,
    bare: Served,
    /// This process's resident size before the first round: the runtime and both servers, idle.
    baseline: u64,
    /// Whether VmHWM could be reset before every round (else the peaks are the 5 ms samples alone).
    peak_reset: bool,
    /// Requests the proxy logged in its rounds (its log stays in memory).
    proxy_requests: usize,
}

impl ManyClients {
    fn growth(&self, served: &Served) -> u64 {
        served.peak_resident.saturating_sub(self.baseline)
    }
}

/// Rounds of the many clients, alternating between the proxy and the streaming bare server, with this
/// process's peak resident size in each (the higher of VmHWM, reset before the round, and the samples).
async fn many_clients(proxy: &ProxyServer, bare: SocketAddr) -> ManyClients {
    let sampler = ResidentSampler::start();
    let logged_before = proxy.log().len();
    let mut run = ManyClients {
        proxy: Served::default(),
        bare: Served::default(),
        baseline: resident("VmRSS").expect("/proc/self/status with VmRSS (Linux)"),
        peak_reset: true,
        proxy_requests: 0,
    };
    for _ in 0..MANY_ROUNDS {
        for (addr, served) in [(proxy.addr(), &mut run.proxy), (bare, &mut run.bare)] {
            sampler.take();
            let reset = reset_peak();
            let (bytes, took) = many_clients_round(addr).await;
            let peak = resident("VmHWM").filter(|_| reset).unwrap_or(0).max(sampler.take());
            run.peak_reset &= reset;
            served.bytes += bytes;
            served.took += took;
            served.peak_resident = served.peak_resident.max(peak);
        }
    }
    run.proxy_requests = proxy.log().len() - logged_before;
    run
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A file size in MiB, or KiB below one MiB.
fn size_text(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

fn print_many_clients(run: &ManyClients) {
    let sizes: Vec<String> = MANY_MODULES.iter().map(|(_, bytes)| size_text(*bytes)).collect();
    println!(
        "proxy under {MANY_CLIENTS} concurrent clients (kept-alive, in a child process; {MANY_ROUNDS} alternating rounds of {} s each; \
         .mod and .zip of {} modules, zips of {}; files read in {} chunks):",
        ROUND.as_secs(),
        MANY_MODULES.len(),
        sizes.join(", "),
        size_text(FILE_CHUNK_BYTES)
    );
    for (name, served) in [("module proxy", &run.proxy), ("bare hyper, streamed", &run.bare)] {
        println!(
            "  {name:<20} {:>8.1} MB/s, peak resident {:.1} MB = baseline {:.1} MB + {:.1} MB during its rounds",
            served.mb_per_sec(),
            mb(served.peak_resident),
            mb(run.baseline),
            mb(run.growth(served))
        );
    }
    println!(
        "  ratio proxy/bare {:.2} (target >= {RATIO_TARGET}); the proxy logged {} requests (its log is kept in memory)",
        run.proxy.mb_per_sec() / run.bare.mb_per_sec(),
        run.proxy_requests
    );
    println!(
        "  memory: this process holds only the two servers (the clients are another process); the baseline is its resident size \
         before the first round (runtime and servers, idle); the growth during the proxy's rounds is what is held to {MEMORY_LIMIT_MB} MB \
         (an upper bound: it may include memory the allocator kept from the bare server's earlier rounds); peaks are {}",
        if run.peak_reset {
            "VmHWM, reset before each round through /proc/self/clear_refs, or VmRSS sampled every 5 ms if higher"
        } else {
            "VmRSS sampled every 5 ms (resetting VmHWM through /proc/self/clear_refs was refused, so a spike shorter than 5 ms may be missed)"
        }
    );
}

fn gbits(bytes: u64, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e9
}

fn main() {
    if let Ok(addr) = std::env::var(CLIENTS_OF) {
        run_many_clients(&addr);
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    write_store(dir.path()).expect("writing the store");
    rt.block_on(async {
        let proxy = ProxyServer::start(ProxyConfig::loopback(dir.path(), PROXY_PORT)).await.expect("the module proxy");
        let streaming_addr = SocketAddr::from(([127, 0, 0, 1], STREAMING_BARE_PORT));
        let streaming = streaming_bare_server(streaming_addr, dir.path().to_path_buf()).await;
        let many = many_clients(&proxy, streaming_addr).await;
        print_many_clients(&many);

        // The bare server's copy of the zip in memory comes only now, after the memory was measured.
        let zip = std::fs::read(dir.path().join(&TARGET[1..])).expect("reading the big zip back");
        let bare_addr = SocketAddr::from(([127, 0, 0, 1], BARE_PORT));
        let bare = bare_server(bare_addr, Bytes::from(zip)).await;
        let targets = [TARGET.to_string()];
        let (mut proxy_total, mut bare_total) = ((0, Duration::ZERO), (0, Duration::ZERO));
        for _ in 0..ROUNDS {
            for (addr, total) in [(proxy.addr(), &mut proxy_total), (bare_addr, &mut bare_total)] {
                let (bytes, took) = round(addr, CLIENTS, &targets).await;
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
        println!(
            "proxy: {MANY_CLIENTS} clients, peak memory growth {:.1} MB (limit {MEMORY_LIMIT_MB} MB), throughput ratio {:.2} (≥ {RATIO_TARGET})",
            mb(many.growth(&many.proxy)),
            many.proxy.mb_per_sec() / many.bare.mb_per_sec()
        );
        bare.abort();
        streaming.abort();
        proxy.stop().await;
    });
}
