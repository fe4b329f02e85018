//! A GOPROXY server (hyper, HTTP/1.1) on loopback over a store directory (and optionally an upstream GOPROXY behind it): serves `list`, `.info`, `.mod`, `.zip` and `@latest`, refuses paths that would leave the store and oversized requests, logs every request with where its answer came from, and can shape its answers.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::goproxy::body::AnswerBody;
use crate::goproxy::content::Content;
use crate::goproxy::layout::{LayoutError, StoreLayout};
pub use crate::goproxy::request::{parse_target, RequestKind, Target};
use crate::goproxy::request::check_sizes;
pub use crate::goproxy::log::{ProxyLog, ProxyRequest, ServedFrom, Unpublished};
use crate::goproxy::source::{Lookup, ModuleSource, SourceError, VersionFile};
pub use crate::goproxy::upstream::Upstream;

/// The proxy's default port. It must stay fixed between builds: the GOPROXY
/// build argument is part of the cache key of every `RUN` after its `ARG`.
pub const DEFAULT_PORT: u16 = 48123;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the module proxy must listen on loopback, not {0}: builds may reach no other address")]
    NotLoopback(IpAddr),
    #[error("port {0} on loopback is already in use (another layerbench run, or some other program): stop it, or give this run another port with --proxy-port (layerbench never picks one itself: the proxy's address is part of every RUN step's cache key)")]
    PortInUse(SocketAddr),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] LayoutError),
    #[error(transparent)]
    Upstream(#[from] SourceError),
    #[error("the upstream GOPROXY {url} is this proxy itself ({addr}); choose another upstream or port")]
    UpstreamIsItself { url: String, addr: SocketAddr },
    #[error("failed to create the upstream cache folder {path}: {source}")]
    CacheFolder { path: PathBuf, source: std::io::Error },
}

/// Network shaping: off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Shaping {
    /// Added before every answer.
    pub latency_ms: u64,
    /// A cap on the bytes per second of every answer's body; `None` is unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub store: PathBuf,
    pub addr: SocketAddr,
    pub shaping: Shaping,
    /// Where to forward what the store lacks (answers kept in its cache folder).
    pub upstream: Option<Upstream>,
}

impl ProxyConfig {
    pub fn loopback(store: impl Into<PathBuf>, port: u16) -> Self {
        ProxyConfig {
            store: store.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            shaping: Shaping::default(),
            upstream: None,
        }
    }
}

/// The shaping in force, changeable while the proxy runs (read when a request arrives).
#[derive(Debug, Clone, Default)]
pub struct ShapingControl {
    inner: Arc<Mutex<Shaping>>,
}

impl ShapingControl {
    pub fn set(&self, shaping: Shaping) {
        if let Ok(mut s) = self.inner.lock() {
            *s = shaping;
        }
    }

    pub fn get(&self) -> Shaping {
        self.inner.lock().map(|s| *s).unwrap_or_default()
    }
}

/// What a lane of the proxy controls: its own hidden versions and shaping.
#[derive(Debug, Clone, Default)]
pub struct LaneControls {
    pub unpublished: Unpublished,
    pub shaping: ShapingControl,
}

/// Where requests are told apart: the builds of a run over several engines reach one proxy through one port, each
/// engine's through its own URL prefix `/lane/<name>`, so each build's requests, hidden versions and shaping are its
/// engine's alone. The plain URL is the lane with the empty name.
#[derive(Debug, Clone, Default)]
struct Lanes {
    inner: Arc<Mutex<std::collections::BTreeMap<String, LaneControls>>>,
}

impl Lanes {
    /// The lane's controls, made (unhidden, unshaped) on first use.
    fn get(&self, name: &str) -> LaneControls {
        match self.inner.lock() {
            Ok(mut lanes) => lanes.entry(name.to_string()).or_default().clone(),
            Err(_) => LaneControls::default(),
        }
    }
}

/// The prefix a lane's URL adds before the GOPROXY paths.
const LANE_PREFIX: &str = "/lane/";

/// Whether `name` may name a lane (it becomes a URL path segment).
pub fn is_lane_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Splits a request path into its lane and the GOPROXY path after it; `None` for a malformed lane. No module path
/// starts with `lane/` (a module path's first element holds a dot), so the prefix cannot hide a module.
fn split_lane(path: &str) -> Option<(&str, &str)> {
    let Some(rest) = path.strip_prefix(LANE_PREFIX) else { return Some(("", path)) };
    let (name, after) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    is_lane_name(name).then_some((name, after))
}

/// A running proxy. Dropping it without [`ProxyServer::stop`] also stops it.
pub struct ProxyServer {
    addr: SocketAddr,
    log: ProxyLog,
    lanes: Lanes,
    unpublished: Unpublished,
    shaping: ShapingControl,
    source: ModuleSource,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProxyServer {
    /// Checks the store's layout and the upstream, binds the port and starts serving.
    pub async fn start(config: ProxyConfig) -> Result<ProxyServer, ProxyError> {
        if !config.addr.ip().is_loopback() {
            return Err(ProxyError::NotLoopback(config.addr.ip()));
        }
        StoreLayout::new(&config.store).validate()?;
        let source = ModuleSource::new(StoreLayout::new(&config.store), config.upstream.as_ref())?;
        if let Some(upstream) = &config.upstream {
            check_not_itself(&source, config.addr)?;
            let path = upstream.cache_folder();
            std::fs::create_dir_all(&path).map_err(|source| ProxyError::CacheFolder { path, source })?;
        }
        let listener = TcpListener::bind(config.addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ProxyError::PortInUse(config.addr)
            } else {
                ProxyError::Bind {
                    addr: config.addr,
                    source,
                }
            }
        })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: config.addr,
            source,
        })?;
        let log = ProxyLog::default();
        let (shutdown, mut stop) = watch::channel(false);
        let lanes = Lanes::default();
        let plain = lanes.get("");
        plain.shaping.set(config.shaping);
        let shared = Shared {
            source: Arc::new(source.clone()),
            lanes: lanes.clone(),
            log: log.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
                        }
                    }
                }
            }
        });
        Ok(ProxyServer {
            addr,
            log,
            lanes,
            unpublished: plain.unpublished,
            shaping: plain.shaping,
            source,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The GOPROXY value builds use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> ProxyLog {
        self.log.clone()
    }

    /// The GOPROXY value of a lane (see [`is_lane_name`]); the empty name is the plain URL.
    pub fn lane_url(&self, name: &str) -> String {
        if name.is_empty() {
            self.url()
        } else {
            format!("{}{LANE_PREFIX}{name}", self.url())
        }
    }

    /// A lane's hidden versions and shaping (the empty name's are [`ProxyServer::unpublished`] and [`ProxyServer::shaping`]).
    pub fn lane(&self, name: &str) -> LaneControls {
        self.lanes.get(name)
    }

    /// The handle that changes the network shaping.
    pub fn shaping(&self) -> ShapingControl {
        self.shaping.clone()
    }

    /// The handle that hides and publishes versions.
    pub fn unpublished(&self) -> Unpublished {
        self.unpublished.clone()
    }

    /// The lookup path this proxy answers from (store, cache folder, upstream), for dependency bumps.
    pub fn source(&self) -> ModuleSource {
        self.source.clone()
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Refuses an upstream that is this very proxy (a `GOPROXY` pointing at it would loop).
fn check_not_itself(source: &ModuleSource, addr: SocketAddr) -> Result<(), ProxyError> {
    let Some((host, port)) = source.upstream_client().and_then(|c| c.host_and_port()) else {
        return Ok(());
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback && addr.port() != 0 && port == addr.port() {
        return Err(ProxyError::UpstreamIsItself {
            url: source.upstream_url().unwrap_or_default().to_string(),
            addr,
        });
    }
    Ok(())
}

/// The largest request head hyper reads: past it hyper itself answers 431
/// (logged by [`log_unanswered`]); below it [`check_sizes`] gives the finer
/// 414 and 431 answers.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request head.
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a request target the log keeps.
const MAX_LOGGED_TARGET: usize = 512;

/// What every request on every connection shares.
#[derive(Clone)]
struct Shared {
    source: Arc<ModuleSource>,
    lanes: Lanes,
    log: ProxyLog,
}

/// Serves one connection (HTTP/1.1, kept alive) until the client closes it
/// or the proxy stops; a request hyper refuses before it is parsed is logged too.
async fn serve_connection(stream: TcpStream, shared: Shared, mut stop: watch::Receiver<bool>) {
    let for_requests = shared.clone();
    let service = service_fn(move |request| respond(request, for_requests.clone()));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        log_unanswered(&error, &shared.log);
    }
}

/// Logs the answer hyper gave on its own to a head it could not parse (431
/// for one too large, 400 for a malformed one); its path is not known.
fn log_unanswered(error: &hyper::Error, log: &ProxyLog) {
    let (status, path) = if error.is_parse_too_large() {
        (431, format!("<request head over {MAX_HEAD_BYTES} bytes>"))
    } else if error.is_parse() {
        (400, "<malformed request head>".to_string())
    } else {
        return;
    };
    log.push(ProxyRequest {
        path,
        module: None,
        version: None,
        kind: RequestKind::Other,
        status,
        bytes: 0,
        at_unix_ms: crate::results::unix_ms_now(),
        duration_ms: 0.0,
        served_from: ServedFrom::None,
        lane: String::new(),
    });
}

/// Answers one request: refused (oversized, leaving the store, malformed),
/// 405 for a method other than GET and HEAD, else from the store or the
/// upstream; the shaping's latency comes before the answer, its bandwidth
/// cap paces the body, and the body logs the request once it is sent.
async fn respond(request: Request<Incoming>, shared: Shared) -> Result<Response<AnswerBody>, Infallible> {
    let started = Instant::now();
    let at_unix_ms = crate::results::unix_ms_now();
    let uri = request.uri();
    let full_target = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    let header_bytes = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    // The lane's prefix is not part of what the log keeps as the path.
    let (lane, path) = split_lane(uri.path()).unwrap_or(("", uri.path()));
    let target_text = full_target.strip_prefix(uri.path()).map_or_else(|| full_target.clone(), |query| format!("{path}{query}"));
    let controls = shared.lanes.get(lane);
    let shaping = controls.shaping.get();
    let checked = check_sizes(full_target.len(), header_bytes).and_then(|()| match split_lane(uri.path()) {
        Some(_) => parse_target(path),
        None => Err(crate::goproxy::request::Refusal::BadLane),
    });
    let refused = checked.is_err();
    let (target, status, body, served_from) = match checked {
        Err(refusal) => (Target::other(), refusal.status(), Content::from(format!("refused: {refusal}\n")), ServedFrom::None),
        Ok(target) if request.method() != Method::GET && request.method() != Method::HEAD => {
            (target, 405, Content::from(b"method not allowed\n".to_vec()), ServedFrom::None)
        }
        Ok(target) => {
            let (status, body, from) = answer(&shared.source, &controls.unpublished, &target).await;
            (target, status, body, from)
        }
    };
    if shaping.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shaping.latency_ms)).await;
    }
    let content_type = match (status, target.kind) {
        (200, RequestKind::Zip) => "application/zip",
        (200, RequestKind::Info | RequestKind::Latest) => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let entry = ProxyRequest {
        path: loggable(&target_text),
        module: target.module,
        version: target.version,
        kind: target.kind,
        status,
        bytes: 0,
        at_unix_ms,
        duration_ms: 0.0,
        served_from,
        lane: lane.to_string(),
    };
    let body = AnswerBody::new(body, shaping.bandwidth_bytes_per_sec, entry, shared.log.clone(), started);
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == 405 {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if refused {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A request target as the log keeps it: whole unless it is oversized.
fn loggable(target: &str) -> String {
    if target.len() <= MAX_LOGGED_TARGET {
        return target.to_string();
    }
    let mut end = MAX_LOGGED_TARGET;
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &target[..end], target.len())
}

/// The status, body and origin of the answer to one request; unpublished
/// versions are hidden the same way whichever source answered. A version's
/// file comes opened, to be streamed; a `list` is read to be filtered.
async fn answer(source: &ModuleSource, hidden: &Unpublished, target: &Target) -> (u16, Content, ServedFrom) {
    let not_found = |what: &str| (404, Content::from(format!("not found: {what}\n")), ServedFrom::None);
    let Some(module) = &target.module else {
        return not_found("not a module proxy request");
    };
    let version = target.version.clone().unwrap_or_default();
    let (lookup, what) = match target.kind {
        RequestKind::Other => return not_found("not a module proxy request"),
        RequestKind::Latest => (source.latest(module, hidden).await, format!("module {module}: no versions")),
        RequestKind::List => match source.list(module).await.into_memory().await {
            // An empty list is how a proxy says "no tagged versions"; an
            // unknown module is "not found".
            Lookup::Found { body, from } => {
                let visible: String = String::from_utf8_lossy(&body)
                    .lines()
                    .filter(|v| !hidden.is_hidden(module, v.trim()))
                    .map(|v| format!("{v}\n"))
                    .collect();
                (Lookup::Found { body: Content::from(visible), from }, String::new())
            }
            other => (other.map_body(Content::Memory), format!("module {module}")),
        },
        RequestKind::Info | RequestKind::Mod | RequestKind::Zip => {
            if hidden.is_hidden(module, &version) {
                return not_found(&format!("{module}@{version} (not published yet)"));
            }
            let file = match target.kind {
                RequestKind::Info => VersionFile::Info,
                RequestKind::Mod => VersionFile::Mod,
                _ => VersionFile::Zip,
            };
            (source.version_file(module, &version, file).await, format!("{module}@{version}"))
        }
    };
    match lookup {
        Lookup::Found { body, from } => (200, body, from),
        Lookup::NotFound => not_found(&what),
        Lookup::Failed(message) => (502, Content::from(format!("{message}\n")), ServedFrom::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goproxy::client;
    use crate::goproxy::request::{MAX_HEADER_BYTES, MAX_URI_BYTES};

    async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
        let answer = client::get(addr, path, &[]).await.unwrap();
        (answer.status, answer.body)
    }

    fn store_with(root: &std::path::Path, module_dir: &str, versions: &[&str]) {
        let v = root.join(module_dir).join("@v");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("list"), versions.iter().map(|v| format!("{v}\n")).collect::<String>()).unwrap();
        for ver in versions {
            std::fs::write(v.join(format!("{ver}.info")), format!("{{\"Version\":\"{ver}\"}}")).unwrap();
            std::fs::write(v.join(format!("{ver}.mod")), "module m\n").unwrap();
            std::fs::write(v.join(format!("{ver}.zip")), format!("zip {module_dir} {ver}")).unwrap();
        }
    }

    /// A store under `<tmp>/store` with `<tmp>/secret/@v/list` beside it, which no request may reach.
    fn store_beside_a_secret() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        store_with(&store, "example.com/!big!mod", &["v1.0.0", "v1.1.0"]);
        std::fs::create_dir_all(dir.path().join("secret/@v")).unwrap();
        std::fs::write(dir.path().join("secret/@v/list"), "secret\n").unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn each_lane_has_its_own_hidden_versions_and_its_requests_are_logged_as_its_own() {
        let (_dir, store) = store_beside_a_secret();
        let proxy = ProxyServer::start(ProxyConfig::loopback(&store, 0)).await.unwrap();
        assert_eq!(proxy.lane_url("e1"), format!("{}/lane/e1", proxy.url()));
        proxy.lane("e1").unpublished.set([("example.com/BigMod".to_string(), "v1.1.0".to_string())]);
        let list = "/example.com/!big!mod/@v/list";
        assert_eq!(get(proxy.addr(), &format!("/lane/e1{list}")).await, (200, b"v1.0.0\n".to_vec()));
        assert_eq!(get(proxy.addr(), &format!("/lane/e2{list}?go-get=1")).await, (200, b"v1.0.0\nv1.1.0\n".to_vec()));
        assert_eq!(get(proxy.addr(), list).await.0, 200);
        assert_eq!(get(proxy.addr(), &format!("/lane/e!1{list}")).await.0, 400);
        let log = proxy.log().snapshot();
        let seen: Vec<(&str, &str)> = log.iter().map(|r| (r.lane.as_str(), r.path.as_str())).collect();
        assert_eq!(seen[..3], [("e1", list), ("e2", "/example.com/!big!mod/@v/list?go-get=1"), ("", list)]);
        assert_eq!((log[3].status, log[3].kind), (400, RequestKind::Other));
    }

    #[tokio::test]
    async fn module_requests_are_answered_over_kept_alive_connections_and_logged() {
        let (_dir, store) = store_beside_a_secret();
        let proxy = ProxyServer::start(ProxyConfig::loopback(&store, 48211)).await.unwrap();
        let addr = proxy.addr();
        let asked = [
            ("/example.com/!big!mod/@v/list", 200, "v1.0.0\nv1.1.0\n"),
            ("/example.com/%21big%21mod/@v/v1.0.0.info", 200, "{\"Version\":\"v1.0.0\"}"),
            ("/example.com/!big!mod/@v/v1.1.0.mod", 200, "module m\n"),
            ("/example.com/!big!mod/@v/v1.1.0.zip", 200, "zip example.com/!big!mod v1.1.0"),
            ("/example.com/!big!mod/@latest", 200, "{\"Version\":\"v1.1.0\"}"),
            ("/example.com/!big!mod/@v/v9.9.9.zip", 404, "not found: example.com/BigMod@v9.9.9\n"),
            ("/example.com/!big!mod/@v/list?go-get=1", 200, "v1.0.0\nv1.1.0\n"),
            ("/favicon.ico", 404, "not found: not a module proxy request\n"),
        ];
        for (path, status, body) in asked {
            let (got, text) = get(addr, path).await;
            assert_eq!((got, String::from_utf8_lossy(&text).as_ref()), (status, body), "{path}");
        }
        let log = proxy.log().snapshot();
        let logged: Vec<(&str, u16, u64)> = log.iter().map(|r| (r.path.as_str(), r.status, r.bytes)).collect();
        let expected: Vec<(&str, u16, u64)> = asked.iter().map(|(p, s, b)| (*p, *s, b.len() as u64)).collect();
        assert_eq!(logged, expected);
        assert_eq!(log[1].kind, RequestKind::Info);
        assert_eq!((log[3].module.as_deref(), log[3].version.as_deref()), (Some("example.com/BigMod"), Some("v1.1.0")));
        assert_eq!(log[3].served_from, ServedFrom::Store);
        assert!(log[5].is_miss() && log[5].served_from == ServedFrom::None);

        // Two requests over one connection (as the go command sends them) are both answered and logged.
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        let driving = tokio::spawn(connection);
        for path in ["/example.com/!big!mod/@v/list", "/example.com/!big!mod/@v/v1.0.0.mod"] {
            let request = Request::get(path).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            // An answer is logged once its body has gone out (a file's is streamed after the head).
            http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
        }
        assert_eq!(proxy.log().len(), asked.len() + 2);
        // Stopping the proxy closes a connection left open, so no later request reaches a stopped proxy.
        proxy.stop().await;
        tokio::time::timeout(Duration::from_secs(5), driving).await.expect("the idle connection was closed").unwrap().unwrap();
    }

    #[tokio::test]
    async fn requests_for_paths_outside_the_store_or_with_malformed_escapes_are_refused_and_logged() {
        let (_dir, store) = store_beside_a_secret();
        let proxy = ProxyServer::start(ProxyConfig::loopback(&store, 48212)).await.unwrap();
        let refused = [
            "/../secret/@v/list",
            "/example.com/../../secret/@v/list",
            "/%2e%2e/secret/@v/list",
            "/%2E%2E/secret/@v/list",
            "/%2e%2E/secret/@v/list",
            "/.%2E/secret/@v/list",
            "/example.com%2f..%2f..%2fsecret/@v/list",
            "/example.com%2F..%2F..%2Fsecret/@v/list",
            "//secret/@v/list",
            "/example.com/%5c..%5c..%5csecret/@v/list",
            "/example.com/!big!mod/@v/v1.0.0.zip%00",
            "/example.com/%zz/@v/list",
            "/example.com/!big!mod/@v/list%2",
        ];
        for path in refused {
            let (status, body) = get(proxy.addr(), path).await;
            let text = String::from_utf8_lossy(&body);
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.starts_with("refused: the request path") && !text.contains("secret\n"), "{path}: {text}");
        }
        let log = proxy.log().snapshot();
        assert_eq!(log.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), refused);
        assert!(log.iter().all(|r| r.status == 400 && r.kind == RequestKind::Other && r.served_from == ServedFrom::None));
        assert!(log.iter().all(|r| r.bytes > 0), "the refusal's text is sent and counted");
        let (status, _) = get(proxy.addr(), "/example.com/!big!mod/@v/list").await;
        assert_eq!(status, 200, "a refusal closes only its own connection");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn oversized_requests_and_other_methods_are_refused_and_logged() {
        let (_dir, store) = store_beside_a_secret();
        let proxy = ProxyServer::start(ProxyConfig::loopback(&store, 48213)).await.unwrap();
        let addr = proxy.addr();
        let long_path = format!("/example.com/{}/@v/list", "a".repeat(MAX_URI_BYTES));
        let answer = client::get(addr, &long_path, &[]).await.unwrap();
        assert_eq!(answer.status, 414);
        assert!(String::from_utf8_lossy(&answer.body).contains("at most 8192"));

        let big_value = "x".repeat(MAX_HEADER_BYTES);
        let answer = client::get(addr, "/example.com/!big!mod/@v/list", &[("x-padding", &big_value)]).await.unwrap();
        assert_eq!(answer.status, 431);
        let many: Vec<(String, String)> = (0..40).map(|i| (format!("x-h{i}"), "y".repeat(300))).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let answer = client::get(addr, "/example.com/!big!mod/@v/list", &many).await.unwrap();
        assert_eq!(answer.status, 431, "many headers add up");

        // A head past what hyper reads at all is refused by hyper, and still logged.
        let huge_value = "x".repeat(MAX_HEAD_BYTES + 1);
        let answer = client::get(addr, "/example.com/!big!mod/@v/list", &[("x-padding", &huge_value)]).await.unwrap();
        assert_eq!(answer.status, 431);

        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let post = Request::post("/example.com/!big!mod/@v/list").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let response = sender.send_request(post).await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()), Some("GET, HEAD"));

        let log = proxy.log().snapshot();
        let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [414, 431, 431, 431, 405]);
        assert!(log[0].path.len() < 600 && log[0].path.ends_with(&format!("({} bytes)", long_path.len())), "{}", log[0].path);
        assert_eq!(log[1].path, "/example.com/!big!mod/@v/list");
        assert!(log[3].path.contains("request head over"), "{}", log[3].path);
        assert_eq!(log[4].kind, RequestKind::List, "a refused method still says what it asked for");
        assert!(log.iter().all(|r| r.is_miss()));
        proxy.stop().await;
    }

    #[tokio::test]
    async fn shaping_delays_each_answer_and_paces_its_body_while_unshaped_answers_are_quick() {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), "example.com/big", &["v1.0.0"]);
        let zip = dir.path().join("example.com/big/@v/v1.0.0.zip");
        std::fs::write(&zip, vec![7u8; 64 * 1024]).unwrap();
        let mut config = ProxyConfig::loopback(dir.path(), 48214);
        config.shaping = Shaping { latency_ms: 120, bandwidth_bytes_per_sec: Some(256 * 1024) };
        let proxy = ProxyServer::start(config).await.unwrap();
        let started = Instant::now();
        let (status, body) = get(proxy.addr(), "/example.com/big/@v/v1.0.0.zip").await;
        let took = started.elapsed();
        assert_eq!((status, body.len()), (200, 64 * 1024));
        // 120 ms of latency, then 64 KiB at 256 KiB/s (250 ms).
        assert!(took >= Duration::from_millis(120 + 240), "took only {took:?}");
        let started = Instant::now();
        let (status, _) = get(proxy.addr(), "/example.com/big/@v/v9.zip").await;
        assert_eq!(status, 404);
        assert!(started.elapsed() >= Duration::from_millis(120), "a miss is delayed too");
        assert!(proxy.log().snapshot()[0].duration_ms >= 360.0);

        proxy.shaping().set(Shaping::default());
        std::fs::write(&zip, vec![7u8; 32 * 1024 * 1024]).unwrap();
        let started = Instant::now();
        let (status, body) = get(proxy.addr(), "/example.com/big/@v/v1.0.0.zip").await;
        let took = started.elapsed();
        assert_eq!((status, body.len()), (200, 32 * 1024 * 1024));
        // Far below loopback speed on any machine (32 MiB in 2 s is 134 Mbit/s): unshaped answers are not paced.
        assert!(took < Duration::from_secs(2), "32 MiB took {took:?}");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn a_proxy_with_an_upstream_serves_and_logs_what_its_store_lacks() {
        let (up_store, store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        store_with(up_store.path(), "example.com/!up", &["v1.0.0", "v1.2.0"]);
        store_with(store.path(), "example.com/local", &["v0.1.0"]);
        let up = ProxyServer::start(ProxyConfig::loopback(up_store.path(), 0)).await.unwrap();
        let mut config = ProxyConfig::loopback(store.path(), 0);
        config.upstream = Some(Upstream::new(up.url(), cache.path()));
        let proxy = ProxyServer::start(config).await.unwrap();
        proxy.unpublished().set([("example.com/Up".to_string(), "v1.2.0".to_string())]);

        let (status, body) = get(proxy.addr(), "/example.com/!up/@v/v1.0.0.zip").await;
        assert_eq!((status, body.as_slice()), (200, &b"zip example.com/!up v1.0.0"[..]));
        let (_, body) = get(proxy.addr(), "/example.com/!up/@v/list").await;
        assert_eq!(body, b"v1.0.0\n", "a hidden version is hidden in an upstream list too");
        let (status, _) = get(proxy.addr(), "/example.com/!up/@v/v1.2.0.zip").await;
        assert_eq!(status, 404, "and its files are not fetched");
        let (status, _) = get(proxy.addr(), "/example.com/local/@v/v0.1.0.mod").await;
        assert_eq!(status, 200);
        let (status, _) = get(proxy.addr(), "/example.com/!up/@v/v1.0.0.zip").await;
        assert_eq!(status, 200);
        let (status, _) = get(proxy.addr(), "/example.com/absent/@v/v1.0.0.info").await;
        assert_eq!(status, 404);
        let (status, _) = get(proxy.addr(), "/example.com/%2e%2e/@v/v1.0.0.info").await;
        assert_eq!(status, 400, "a refused path is not forwarded");

        let log = proxy.log().snapshot();
        let from: Vec<ServedFrom> = log.iter().map(|r| r.served_from).collect();
        let (store_, up_, cached, none) = (ServedFrom::Store, ServedFrom::Upstream, ServedFrom::UpstreamCache, ServedFrom::None);
        assert_eq!(from, [up_, up_, none, store_, cached, none, none]);
        assert_eq!(log[0].module.as_deref(), Some("example.com/Up"));
        assert_eq!((log[0].version.as_deref(), log[0].bytes), (Some("v1.0.0"), 26));
        assert!(log[5].is_miss() && !log[4].is_miss());
        let upstream_paths: Vec<String> = up.log().snapshot().into_iter().map(|r| r.path).collect();
        assert_eq!(upstream_paths, ["/example.com/!up/@v/v1.0.0.zip", "/example.com/!up/@v/list", "/example.com/absent/@v/v1.0.0.info"]);
        proxy.stop().await;
        up.stop().await;
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_bad_gateway_naming_it_and_a_proxy_cannot_be_its_own_upstream() {
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        store_with(store.path(), "example.com/local", &["v0.1.0"]);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let mut config = ProxyConfig::loopback(store.path(), 0);
        config.upstream = Some(Upstream::new(&url, cache.path()));
        let proxy = ProxyServer::start(config).await.unwrap();
        let (status, body) = get(proxy.addr(), "/example.com/x/@v/v1.0.0.zip").await;
        assert_eq!(status, 502);
        assert!(String::from_utf8_lossy(&body).contains(&url), "{}", String::from_utf8_lossy(&body));
        let log = proxy.log().snapshot();
        assert!(log[0].is_miss() && log[0].served_from == ServedFrom::None);
        proxy.stop().await;

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = ProxyConfig::loopback(store.path(), port);
        config.upstream = Some(Upstream::new(format!("http://localhost:{port}/"), cache.path()));
        let err = ProxyServer::start(config).await.err().unwrap();
        assert!(matches!(err, ProxyError::UpstreamIsItself { .. }), "{err}");
    }
}
