//! What the module proxy answered and what it hides: the shared request log, where each answer came from, and versions not yet published.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::goproxy::request::RequestKind;

/// Where an answer of the module proxy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServedFrom {
    /// The module store.
    Store,
    /// Fetched from the upstream GOPROXY for this request (and now kept in the cache folder).
    Upstream,
    /// An earlier upstream answer kept in the cache folder.
    UpstreamCache,
    /// Not answered (not found, or the upstream failed).
    None,
}

impl ServedFrom {
    /// The name used in the log and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedFrom::Store => "store",
            ServedFrom::Upstream => "upstream",
            ServedFrom::UpstreamCache => "upstream-cache",
            ServedFrom::None => "none",
        }
    }
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
    /// The lane the request came in on (`/lane/<name>/…`; empty for the plain URL): one per engine of a run over several.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lane: String,
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

    pub(crate) fn push(&self, r: ProxyRequest) {
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
