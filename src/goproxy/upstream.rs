//! The upstream GOPROXY the module proxy forwards to: its URL (from the command line or the `GOPROXY` environment variable), its cache folder name, and the HTTP(S) client that fetches from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

/// How long one upstream answer (connect, head and whole body) may take by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed for one request (some GOPROXY servers redirect zips to blob storage).
const MAX_REDIRECTS: usize = 5;

/// An upstream GOPROXY and the folder its answers are kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http://…` or `https://…`, the base of GOPROXY requests.
    pub url: String,
    /// The cache root; each upstream gets its own subfolder ([`cache_folder_name`]).
    pub cache_dir: PathBuf,
    /// The most one upstream answer may take.
    pub timeout: Duration,
}

impl Upstream {
    pub fn new(url: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Upstream {
            url: url.into(),
            cache_dir: cache_dir.into(),
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }

    /// The folder (GOPROXY layout) that keeps this upstream's answers.
    pub fn cache_folder(&self) -> PathBuf {
        self.cache_dir.join(cache_folder_name(&self.url))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream GOPROXY `{url}` is not an http:// or https:// URL with a host")]
    BadUrl { url: String },
    #[error("the upstream GOPROXY {url} uses https, but no trusted root certificate was found on this machine (install ca-certificates)")]
    NoRootCertificates { url: String },
}

/// The first `http://` or `https://` entry of the `GOPROXY` environment variable.
pub fn upstream_from_env() -> Option<String> {
    upstream_from_goproxy(&std::env::var("GOPROXY").ok()?)
}

/// The first `http://` or `https://` entry of a GOPROXY value (entries are
/// separated by `,` or `|`; `direct`, `off` and `file://` entries are skipped).
pub fn upstream_from_goproxy(value: &str) -> Option<String> {
    value
        .split([',', '|'])
        .map(str::trim)
        .find(|entry| {
            let lower = entry.to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        })
        .map(str::to_string)
}

/// The name of an upstream's cache subfolder: its host, port and path made
/// safe for a file name (readable), then a short hash of the whole URL, so two
/// upstreams never share a folder (`127.0.0.1_48131-1a2b3c4d5e6f`).
pub fn cache_folder_name(url: &str) -> String {
    let normalised = url.trim().trim_end_matches('/');
    let without_scheme = normalised.split_once("://").map_or(normalised, |(_, rest)| rest);
    let mut readable = String::with_capacity(without_scheme.len());
    for c in without_scheme.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '-' || (c == '.' && !readable.ends_with('.'));
        readable.push(if keep { c.to_ascii_lowercase() } else { '_' });
    }
    let readable = readable.trim_matches(['_', '.']);
    let readable = if readable.is_empty() { "upstream" } else { readable };
    let digest = hex::encode(Sha256::digest(normalised.as_bytes()));
    format!("{readable}-{}", &digest[..12])
}

/// What the upstream said about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 200 with this body.
    Found(Vec<u8>),
    /// 404 or 410: the upstream does not have it.
    NotFound,
    /// Unreachable, timed out, or another status; the text says which, naming the upstream.
    Failed(String),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A hyper client for one upstream GOPROXY.
#[derive(Clone)]
pub struct UpstreamClient {
    base: String,
    timeout: Duration,
    client: HttpsClient,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").field("base", &self.base).field("timeout", &self.timeout).finish()
    }
}

impl UpstreamClient {
    /// A client for `url` (http, or https with the machine's root certificates).
    pub fn new(url: &str, timeout: Duration) -> Result<UpstreamClient, UpstreamError> {
        let base = url.trim().trim_end_matches('/').to_string();
        let bad = || UpstreamError::BadUrl { url: url.to_string() };
        let uri: Uri = base.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(bad()),
        };
        if uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
            return Err(bad());
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let tls = tls_config(https).ok_or_else(|| UpstreamError::NoRootCertificates { url: url.to_string() })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(UpstreamClient { base, timeout, client })
    }

    /// The upstream's base URL (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Where the host of `uri` is, for the "is this proxy itself?" check.
    pub fn host_and_port(&self) -> Option<(String, u16)> {
        let uri: Uri = self.base.parse().ok()?;
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        Some((uri.host()?.trim_matches(['[', ']']).to_string(), port))
    }

    /// GETs `<base>/<path>` (path already escaped, without a leading `/`),
    /// following redirects, within the timeout.
    pub async fn get(&self, path: &str) -> Fetched {
        let url = format!("{}/{path}", self.base);
        match tokio::time::timeout(self.timeout, self.get_following(&url)).await {
            Ok(fetched) => fetched,
            Err(_) => Fetched::Failed(format!(
                "the upstream GOPROXY {} did not answer {url} within {:.1} s",
                self.base,
                self.timeout.as_secs_f64()
            )),
        }
    }

    async fn get_following(&self, url: &str) -> Fetched {
        let failed = |why: String| Fetched::Failed(format!("the upstream GOPROXY {} failed for {url}: {why}", self.base));
        let mut uri: Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => return failed(format!("not a valid URL ({e})")),
        };
        for _ in 0..=MAX_REDIRECTS {
            let request = match hyper::Request::get(uri.clone())
                .header(hyper::header::USER_AGENT, concat!("layerbench/", env!("CARGO_PKG_VERSION")))
                .body(Empty::<Bytes>::new())
            {
                Ok(r) => r,
                Err(e) => return failed(e.to_string()),
            };
            let response = match self.client.request(request).await {
                Ok(r) => r,
                Err(e) => return failed(error_chain(&e)),
            };
            let status = response.status();
            if status.is_redirection() {
                let Some(next) = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| resolve(&uri, l))
                else {
                    return failed(format!("{status} without a usable Location"));
                };
                uri = next;
                continue;
            }
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Fetched::NotFound;
            }
            if status != StatusCode::OK {
                return failed(format!("it answered {status}"));
            }
            return match response.into_body().collect().await {
                Ok(body) => Fetched::Found(body.to_bytes().to_vec()),
                Err(e) => failed(format!("the answer broke off ({})", error_chain(&e))),
            };
        }
        failed(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// The TLS settings: the machine's root certificates for an https upstream
/// (`None` when there are none), an empty store for plain http (never used).
fn tls_config(https: bool) -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return None;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Some(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A `Location` header resolved against the URL that answered it.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    let absolute: Uri = location.parse().ok()?;
    if absolute.scheme().is_some() {
        return Some(absolute);
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    Uri::builder()
        .scheme(base.scheme()?.clone())
        .authority(base.authority()?.clone())
        .path_and_query(path)
        .build()
        .ok()
}

/// An error and its sources in one line (hyper's top-level message alone is "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_http_entry_of_goproxy_is_the_upstream() {
        assert_eq!(upstream_from_goproxy("https://proxy.golang.org,direct").as_deref(), Some("https://proxy.golang.org"));
        assert_eq!(upstream_from_goproxy("direct|off , http://10.0.0.1:3000/go|https://b").as_deref(), Some("http://10.0.0.1:3000/go"));
        assert_eq!(upstream_from_goproxy("off"), None);
        assert_eq!(upstream_from_goproxy("direct,file:///srv/mods"), None);
        assert_eq!(upstream_from_goproxy(""), None);
        assert_eq!(upstream_from_goproxy("file:///x|HTTPS://Upper.example").as_deref(), Some("HTTPS://Upper.example"));
    }

    #[test]
    fn each_upstream_gets_its_own_readable_cache_folder() {
        let a = cache_folder_name("http://127.0.0.1:48131");
        assert!(a.starts_with("127.0.0.1_48131-"), "{a}");
        assert_eq!(a, cache_folder_name("http://127.0.0.1:48131/"), "a trailing slash is the same upstream");
        let b = cache_folder_name("https://goproxy.example.com/go/");
        assert!(b.starts_with("goproxy.example.com_go-"), "{b}");
        // Paths that read alike after sanitising still get different folders.
        assert_ne!(cache_folder_name("http://h/a_b"), cache_folder_name("http://h/a/b"));
        assert_ne!(cache_folder_name("http://h:1"), cache_folder_name("http://h:2"));
        for name in [&a, &b, &cache_folder_name("http://[::1]:80/../x")] {
            assert!(!name.contains('/') && !name.contains("..") && !name.starts_with('.'), "{name}");
        }
    }

    #[test]
    fn upstream_urls_must_be_http_or_https_with_a_host() {
        for bad in ["ftp://x", "direct", "http://", "/just/a/path", "http://h/p?q=1"] {
            assert!(UpstreamClient::new(bad, DEFAULT_UPSTREAM_TIMEOUT).is_err(), "{bad} was accepted");
        }
        let c = UpstreamClient::new("http://127.0.0.1:9/base/", DEFAULT_UPSTREAM_TIMEOUT).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:9/base");
        assert_eq!(c.host_and_port(), Some(("127.0.0.1".to_string(), 9)));
    }

    #[tokio::test]
    async fn an_https_upstream_client_can_be_made() {
        // No network here: construction (TLS settings, root certificates) is as far as https can be tested.
        match UpstreamClient::new("https://proxy.example.com", DEFAULT_UPSTREAM_TIMEOUT) {
            Ok(c) => assert_eq!(c.host_and_port(), Some(("proxy.example.com".to_string(), 443))),
            Err(e) => assert!(matches!(e, UpstreamError::NoRootCertificates { .. }), "{e}"),
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_request() {
        let base: Uri = "http://h:1/a/b/v1.zip".parse().unwrap();
        assert_eq!(resolve(&base, "/x/y.zip").unwrap().to_string(), "http://h:1/x/y.zip");
        assert_eq!(resolve(&base, "y.zip").unwrap().to_string(), "http://h:1/a/b/y.zip");
        assert_eq!(resolve(&base, "https://blob/z").unwrap().to_string(), "https://blob/z");
    }
}
