//! A GOPROXY server on loopback over a store directory (and optionally an upstream GOPROXY behind it): serves `list`, `.info`, `.mod`, `.zip` and `@latest`, logs every request with where its answer came from, and can shape its answers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::goproxy::layout::{unescape_path, LayoutError, StoreLayout};
pub use crate::goproxy::source::ServedFrom;
use crate::goproxy::source::{Lookup, ModuleSource, SourceError, VersionFile};
pub use crate::goproxy::upstream::Upstream;

/// The proxy's default port. It must stay fixed between builds: the GOPROXY
/// build argument is part of the cache key of every `RUN` after its `ARG`.
pub const DEFAULT_PORT: u16 = 48123;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the module proxy must listen on loopback, not {0}: builds may reach no other address")]
    NotLoopback(IpAddr),
    #[error("port {0} on loopback is already in use (another layerbench proxy, or some other program); stop it or choose another port with --proxy-port")]
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

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    List,
    Info,
    Mod,
    Zip,
    Latest,
    /// Anything that is not a GOPROXY request (always answered 404).
    Other,
}

/// One request the proxy answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRequest {
    pub path: String,
    pub module: Option<String>,
    pub version: Option<String>,
    pub kind: RequestKind,
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub duration_ms: f64,
    /// Where the answer came from (`none` when it was not answered 200).
    pub served_from: ServedFrom,
}

impl ProxyRequest {
    /// A request the proxy did not answer 200 (from the store or the upstream).
    pub fn is_miss(&self) -> bool {
        self.status != 200
    }
}

/// The shared, append-only log of requests.
#[derive(Debug, Clone, Default)]
pub struct ProxyLog {
    inner: Arc<Mutex<Vec<ProxyRequest>>>,
}

impl ProxyLog {
    pub fn snapshot(&self) -> Vec<ProxyRequest> {
        self.inner.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests logged after the first `mark` ones (take `mark` from [`ProxyLog::len`] before a build).
    pub fn since(&self, mark: usize) -> Vec<ProxyRequest> {
        self.inner
            .lock()
            .map(|l| l.get(mark..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    fn push(&self, r: ProxyRequest) {
        if let Ok(mut l) = self.inner.lock() {
            l.push(r);
        }
    }
}

/// Module versions the proxy pretends not to have yet (for "upstream
/// publishes a new version" scenarios): hidden from `list` and `@latest`, and
/// answered "not found" until published.
#[derive(Debug, Clone, Default)]
pub struct Unpublished {
    inner: Arc<Mutex<std::collections::BTreeSet<(String, String)>>>,
}

impl Unpublished {
    /// Hides exactly these `(module, version)` pairs (replacing any earlier set).
    pub fn set(&self, versions: impl IntoIterator<Item = (String, String)>) {
        if let Ok(mut h) = self.inner.lock() {
            *h = versions.into_iter().collect();
        }
    }

    /// Makes a hidden version available.
    pub fn publish(&self, module: &str, version: &str) {
        if let Ok(mut h) = self.inner.lock() {
            h.remove(&(module.to_string(), version.to_string()));
        }
    }

    pub fn is_hidden(&self, module: &str, version: &str) -> bool {
        self.inner
            .lock()
            .map(|h| h.contains(&(module.to_string(), version.to_string())))
            .unwrap_or(false)
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

/// A running proxy. Dropping it without [`ProxyServer::stop`] also stops it.
pub struct ProxyServer {
    addr: SocketAddr,
    log: ProxyLog,
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
        let task_source = Arc::new(source.clone());
        let shaping = ShapingControl::default();
        shaping.set(config.shaping);
        let task_shaping = shaping.clone();
        let task_log = log.clone();
        let unpublished = Unpublished::default();
        let task_unpublished = unpublished.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let source = Arc::clone(&task_source);
                            let log = task_log.clone();
                            let hidden = task_unpublished.clone();
                            let shaping = task_shaping.get();
                            tokio::spawn(async move { serve_connection(stream, &source, &hidden, shaping, &log).await });
                        }
                    }
                }
            }
        });
        Ok(ProxyServer {
            addr,
            log,
            unpublished,
            shaping,
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

/// Serves one connection: one request, then close (`Connection: close`).
async fn serve_connection(mut stream: TcpStream, source: &ModuleSource, hidden: &Unpublished, shaping: Shaping, log: &ProxyLog) {
    let started = Instant::now();
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let Some((method, path)) = read_request_head(&mut stream).await else {
        return;
    };
    let target = parse_target(&path);
    let (status, body, served_from) = if method != "GET" && method != "HEAD" {
        (405, b"method not allowed\n".to_vec(), ServedFrom::None)
    } else {
        answer(source, hidden, &target).await
    };
    if shaping.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shaping.latency_ms)).await;
    }
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Gateway",
    };
    let content_type = match target.kind {
        RequestKind::Zip => "application/zip",
        RequestKind::Info | RequestKind::Latest => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut sent = 0u64;
    if stream.write_all(head.as_bytes()).await.is_ok() && method != "HEAD" {
        sent = write_shaped(&mut stream, &body, shaping).await;
    }
    let _ = stream.shutdown().await;
    log.push(ProxyRequest {
        path,
        module: target.module,
        version: target.version,
        kind: target.kind,
        status,
        bytes: sent,
        at_unix_ms,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        served_from,
    });
}

async fn read_request_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    Some((method, path))
}

async fn write_shaped(stream: &mut TcpStream, body: &[u8], shaping: Shaping) -> u64 {
    let Some(bps) = shaping.bandwidth_bytes_per_sec.filter(|b| *b > 0) else {
        return match stream.write_all(body).await {
            Ok(()) => body.len() as u64,
            Err(_) => 0,
        };
    };
    let start = Instant::now();
    let mut sent = 0u64;
    for chunk in body.chunks(16 * 1024) {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
        let due = Duration::from_secs_f64(sent as f64 / bps as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    sent
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub module: Option<String>,
    pub version: Option<String>,
    pub kind: RequestKind,
}

/// Parses a GOPROXY request path (`/<escaped module>/@v/<file>` or `/<escaped module>/@latest`).
pub fn parse_target(path: &str) -> Target {
    let other = Target {
        module: None,
        version: None,
        kind: RequestKind::Other,
    };
    let Some(decoded) = percent_decode(path.split('?').next().unwrap_or(path)) else {
        return other;
    };
    let path = decoded.trim_start_matches('/');
    if path.split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty()) {
        return other;
    }
    if let Some(escaped) = path.strip_suffix("/@latest") {
        return Target {
            module: unescape_path(escaped),
            version: None,
            kind: RequestKind::Latest,
        };
    }
    let Some((escaped, file)) = path.split_once("/@v/") else {
        return other;
    };
    if file.contains('/') {
        return other;
    }
    let (kind, version) = if file == "list" {
        (RequestKind::List, None)
    } else if let Some(v) = file.strip_suffix(".info") {
        (RequestKind::Info, Some(v))
    } else if let Some(v) = file.strip_suffix(".mod") {
        (RequestKind::Mod, Some(v))
    } else if let Some(v) = file.strip_suffix(".zip") {
        (RequestKind::Zip, Some(v))
    } else {
        return other;
    };
    Target {
        module: unescape_path(escaped),
        version: version.and_then(unescape_path),
        kind,
    }
}

/// Decodes `%XX` escapes (the go command sends `!` as `%21`).
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The status, body and origin of the answer to one request; unpublished
/// versions are hidden the same way whichever source answered.
async fn answer(source: &ModuleSource, hidden: &Unpublished, target: &Target) -> (u16, Vec<u8>, ServedFrom) {
    let not_found = |what: &str| (404, format!("not found: {what}\n").into_bytes(), ServedFrom::None);
    let Some(module) = &target.module else {
        return not_found("not a module proxy request");
    };
    let version = target.version.clone().unwrap_or_default();
    let (lookup, what) = match target.kind {
        RequestKind::Other => return not_found("not a module proxy request"),
        RequestKind::Latest => (source.latest(module, hidden).await, format!("module {module}: no versions")),
        RequestKind::List => match source.list(module).await {
            // An empty list is how a proxy says "no tagged versions"; an
            // unknown module is "not found".
            Lookup::Found { body, from } => {
                let visible: String = String::from_utf8_lossy(&body)
                    .lines()
                    .filter(|v| !hidden.is_hidden(module, v.trim()))
                    .map(|v| format!("{v}\n"))
                    .collect();
                (Lookup::Found { body: visible.into_bytes(), from }, String::new())
            }
            other => (other, format!("module {module}")),
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
        Lookup::Failed(message) => (502, format!("{message}\n").into_bytes(), ServedFrom::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = String::from_utf8_lossy(&buf[..split]).split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, buf[split + 4..].to_vec())
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

        let log = proxy.log().snapshot();
        let from: Vec<ServedFrom> = log.iter().map(|r| r.served_from).collect();
        let (store_, up_, cached, none) = (ServedFrom::Store, ServedFrom::Upstream, ServedFrom::UpstreamCache, ServedFrom::None);
        assert_eq!(from, [up_, up_, none, store_, cached, none]);
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

    #[test]
    fn request_paths_are_parsed_with_escapes() {
        let t = parse_target("/github.com/!burnt!sushi/toml/@v/v1.3.2.zip");
        assert_eq!(t.module.as_deref(), Some("github.com/BurntSushi/toml"));
        assert_eq!(t.version.as_deref(), Some("v1.3.2"));
        assert_eq!(t.kind, RequestKind::Zip);
        let t = parse_target("/github.com/%21burnt%21sushi/toml/@v/v1.2.0.info");
        assert_eq!(t.module.as_deref(), Some("github.com/BurntSushi/toml"));
        assert_eq!(t.kind, RequestKind::Info);
        assert_eq!(parse_target("/a/%zz/@v/list").kind, RequestKind::Other);
        assert_eq!(parse_target("/golang.org/x/sys/@v/list").kind, RequestKind::List);
        assert_eq!(parse_target("/golang.org/x/sys/@latest").kind, RequestKind::Latest);
        assert_eq!(parse_target("/../etc/passwd").kind, RequestKind::Other);
        assert_eq!(parse_target("/a/@v/../../x.zip").kind, RequestKind::Other);
        assert_eq!(parse_target("/favicon.ico").kind, RequestKind::Other);
    }
}
