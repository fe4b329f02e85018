//! Where a module answer comes from: the store first, then the upstream's cache folder, then the upstream itself (whose answers are kept in that folder) — the one lookup path of the proxy server and of dependency bumps.
//!
//! The cache folder is `<cache_dir>/<cache_folder_name(url)>/`, in GOPROXY
//! layout (`<escaped module>/@v/{list, <v>.info, <v>.mod, <v>.zip}` and
//! `<escaped module>/@latest`). Every 200 answer of the upstream is written
//! there atomically (temporary file, then rename), including `list` and
//! `@latest`: the first answer is kept and served from then on, so repeated
//! runs see the same versions whether or not the upstream is reachable or has
//! published something since (delete the folder to refresh it). 404 and 410
//! answers are passed on as "not found" and never kept.
//!
//! The store answers everything it knows first: a module whose `list` is in
//! the store gets its `list` and `@latest` from the store alone, and any
//! version file the store holds comes from the store.
//!
//! A file of the store or the cache folder is found opened, not read: the
//! answer streams it ([`Content::File`]); only the small answers that must be
//! parsed (`list`, `@latest`) are read whole ([`Lookup::into_memory`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Deserialize;

use crate::gomod::modfile::Version;
use crate::goproxy::content::{Content, OpenFile};
use crate::goproxy::layout::{escape_path, StoreLayout};
pub use crate::goproxy::log::{ServedFrom, Unpublished};
use crate::goproxy::upstream::{Fetched, Upstream, UpstreamClient, UpstreamError};

/// One of the files of a module version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionFile {
    Info,
    Mod,
    Zip,
}

impl VersionFile {
    pub const ALL: [VersionFile; 3] = [VersionFile::Info, VersionFile::Mod, VersionFile::Zip];

    pub fn ext(self) -> &'static str {
        match self {
            VersionFile::Info => "info",
            VersionFile::Mod => "mod",
            VersionFile::Zip => "zip",
        }
    }
}

/// The answer to one lookup; its body is a [`Content`] (an opened file, or
/// bytes in memory) until [`Lookup::into_memory`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<B = Content> {
    Found { body: B, from: ServedFrom },
    /// Neither the store nor the upstream has it (or the upstream answered 404/410).
    NotFound,
    /// The upstream could not be reached, timed out or answered an error, or
    /// its answer could not be kept; the text names the upstream or the file.
    Failed(String),
}

impl<B> Lookup<B> {
    /// The same answer with its body changed by `f`.
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Lookup<C> {
        match self {
            Lookup::Found { body, from } => Lookup::Found { body: f(body), from },
            Lookup::NotFound => Lookup::NotFound,
            Lookup::Failed(message) => Lookup::Failed(message),
        }
    }
}

impl Lookup {
    /// The same answer with its body read whole: only for the small answers
    /// that are parsed (`list`, `@latest`). A file that cannot be read makes
    /// it a failure naming the file.
    pub async fn into_memory(self) -> Lookup<Bytes> {
        match self {
            Lookup::Found { body, from } => match body.read_whole().await {
                Ok(body) => Lookup::Found { body, from },
                Err(e) => Lookup::Failed(e.to_string()),
            },
            Lookup::NotFound => Lookup::NotFound,
            Lookup::Failed(message) => Lookup::Failed(message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{0}` is not a module path")]
    BadModulePath(String),
    #[error("`{version}` is not a version of {module}")]
    BadVersion { module: String, version: String },
    #[error("{module}@{version} is not in the module store {store}{}", .upstream.as_ref().map(|u| format!(" nor at the upstream GOPROXY {u}")).unwrap_or_default())]
    NotFound {
        module: String,
        version: String,
        store: PathBuf,
        upstream: Option<String>,
    },
    #[error("{module}: {message}")]
    Upstream { module: String, message: String },
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] UpstreamError),
}

/// The module store, and optionally an upstream GOPROXY with its cache folder.
#[derive(Debug, Clone)]
pub struct ModuleSource {
    store: StoreLayout,
    upstream: Option<UpstreamSide>,
}

#[derive(Debug, Clone)]
struct UpstreamSide {
    client: UpstreamClient,
    cache: StoreLayout,
}

impl UpstreamSide {
    /// `<module>/@v/<file>` from the cache folder, else from the upstream (then kept).
    async fn version_dir_file(&self, module: &str, file: &str, cached: PathBuf) -> Lookup {
        self.answer(&format!("{}/@v/{file}", escape_path(module)), cached).await
    }

    /// The kept answer is found opened (to be streamed); one just fetched is in memory.
    async fn answer(&self, url_path: &str, cached: PathBuf) -> Lookup {
        match OpenFile::open(&cached).await {
            Ok(Some(file)) => return Lookup::Found { body: Content::File(file), from: ServedFrom::UpstreamCache },
            Ok(None) => {}
            Err(e) => return Lookup::Failed(format!("failed to read the cached upstream answer {}: {e}", cached.display())),
        }
        match self.client.get(url_path).await {
            Fetched::Found(body) => match write_atomically(&cached, &body) {
                Ok(()) => Lookup::Found { body: body.into(), from: ServedFrom::Upstream },
                Err(e) => Lookup::Failed(format!(
                    "failed to keep the answer of the upstream GOPROXY {} in {}: {e}",
                    self.client.url(),
                    cached.display()
                )),
            },
            Fetched::NotFound => Lookup::NotFound,
            Fetched::Failed(message) => Lookup::Failed(message),
        }
    }
}

impl ModuleSource {
    /// The store alone, or the store with `upstream` behind it (its client is
    /// made here; the cache folder is created on the first answer kept).
    pub fn new(store: StoreLayout, upstream: Option<&Upstream>) -> Result<ModuleSource, SourceError> {
        let upstream = match upstream {
            Some(u) => Some(UpstreamSide {
                client: UpstreamClient::new(&u.url, u.timeout)?,
                cache: StoreLayout::new(u.cache_folder()),
            }),
            None => None,
        };
        Ok(ModuleSource { store, upstream })
    }

    pub fn store(&self) -> &StoreLayout {
        &self.store
    }

    /// The upstream's base URL, when there is one.
    pub fn upstream_url(&self) -> Option<&str> {
        self.upstream.as_ref().map(|u| u.client.url())
    }

    /// The folder that keeps this upstream's answers, when there is an upstream.
    pub fn cache(&self) -> Option<&StoreLayout> {
        self.upstream.as_ref().map(|u| &u.cache)
    }

    pub(crate) fn upstream_client(&self) -> Option<&UpstreamClient> {
        self.upstream.as_ref().map(|u| &u.client)
    }

    /// Every version the store lists for `module` and, with an upstream, every
    /// version the upstream lists (kept in the cache folder after the first
    /// answer), sorted oldest first. An unknown module has no versions.
    pub async fn versions(&self, module: &str) -> Result<Vec<Version>, SourceError> {
        check_module_path(module)?;
        let mut versions = Vec::new();
        let store_list = self.store.version_dir(module).join("list");
        if store_list.is_file() {
            let text = tokio::fs::read_to_string(&store_list).await.map_err(|source| SourceError::Read { path: store_list, source })?;
            versions.extend(parse_list(&text));
        }
        if let Some(up) = &self.upstream {
            match up.version_dir_file(module, "list", up.cache.version_dir(module).join("list")).await.into_memory().await {
                Lookup::Found { body, .. } => versions.extend(parse_list(&String::from_utf8_lossy(&body))),
                Lookup::NotFound => {}
                Lookup::Failed(message) => return Err(SourceError::Upstream { module: module.to_string(), message }),
            }
        }
        versions.sort();
        versions.dedup();
        Ok(versions)
    }

    /// Makes sure `.info`, `.mod` and `.zip` of `module@version` are on disk
    /// (the store's, or else fetched into the cache folder) and returns the
    /// folder holding all three; a bump reads them from there.
    pub async fn ensure(&self, module: &str, version: &str) -> Result<StoreLayout, SourceError> {
        check_module_path(module)?;
        check_version(module, version)?;
        if VersionFile::ALL.iter().all(|f| self.store.file(module, version, f.ext()).is_file()) {
            return Ok(self.store.clone());
        }
        let not_found = || SourceError::NotFound {
            module: module.to_string(),
            version: version.to_string(),
            store: self.store.root().to_path_buf(),
            upstream: self.upstream_url().map(str::to_string),
        };
        let Some(up) = &self.upstream else {
            return Err(not_found());
        };
        for file in VersionFile::ALL {
            let name = format!("{}.{}", escape_path(version), file.ext());
            match up.version_dir_file(module, &name, up.cache.file(module, version, file.ext())).await {
                Lookup::Found { .. } => {}
                Lookup::NotFound => return Err(not_found()),
                Lookup::Failed(message) => return Err(SourceError::Upstream { module: module.to_string(), message }),
            }
        }
        Ok(up.cache.clone())
    }

    /// The `list` of a module as the store or (else) the upstream has it, unfiltered.
    pub async fn list(&self, module: &str) -> Lookup {
        if check_module_path(module).is_err() {
            return Lookup::NotFound;
        }
        if let Some(body) = open_if_present(&self.store.version_dir(module).join("list")).await {
            return Lookup::Found { body, from: ServedFrom::Store };
        }
        match &self.upstream {
            Some(up) => up.version_dir_file(module, "list", up.cache.version_dir(module).join("list")).await,
            None => Lookup::NotFound,
        }
    }

    /// One file of a module version.
    pub async fn version_file(&self, module: &str, version: &str, file: VersionFile) -> Lookup {
        if check_module_path(module).is_err() || check_version(module, version).is_err() {
            return Lookup::NotFound;
        }
        if let Some(body) = open_if_present(&self.store.file(module, version, file.ext())).await {
            return Lookup::Found { body, from: ServedFrom::Store };
        }
        match &self.upstream {
            Some(up) => {
                let name = format!("{}.{}", escape_path(version), file.ext());
                up.version_dir_file(module, &name, up.cache.file(module, version, file.ext())).await
            }
            None => Lookup::NotFound,
        }
    }

    /// The `.info` of the newest version that is not hidden: from the store's
    /// list when the store knows the module, else the upstream's `@latest`
    /// (or, when that names a hidden version, the newest visible one of the
    /// upstream's list).
    pub async fn latest(&self, module: &str, hidden: &Unpublished) -> Lookup {
        if check_module_path(module).is_err() {
            return Lookup::NotFound;
        }
        if let Ok(list) = tokio::fs::read(self.store.version_dir(module).join("list")).await {
            return match newest_visible(&list, module, hidden) {
                Some(v) => match open_if_present(&self.store.file(module, v.as_str(), "info")).await {
                    Some(body) => Lookup::Found { body, from: ServedFrom::Store },
                    None => Lookup::NotFound,
                },
                None => Lookup::NotFound,
            };
        }
        let Some(up) = &self.upstream else {
            return Lookup::NotFound;
        };
        let cached = up.cache.root().join(escape_path(module)).join("@latest");
        let (info, from) = match up.answer(&format!("{}/@latest", escape_path(module)), cached).await.into_memory().await {
            Lookup::Found { body, from } => (body, from),
            other => return other.map_body(Content::Memory),
        };
        match info_version(&info) {
            Some(v) if hidden.is_hidden(module, &v) => match self.list(module).await.into_memory().await {
                Lookup::Found { body: list, .. } => match newest_visible(&list, module, hidden) {
                    Some(v) => self.version_file(module, v.as_str(), VersionFile::Info).await,
                    None => Lookup::NotFound,
                },
                other => other.map_body(Content::Memory),
            },
            _ => Lookup::Found { body: Content::Memory(info), from },
        }
    }
}

/// A module path that is safe to use as a folder: non-empty segments, none `.` or `..`.
fn check_module_path(module: &str) -> Result<(), SourceError> {
    let bad = module.is_empty()
        || module.contains(['\\', '\0'])
        || module.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        Err(SourceError::BadModulePath(module.to_string()))
    } else {
        Ok(())
    }
}

fn check_version(module: &str, version: &str) -> Result<(), SourceError> {
    if version.is_empty() || version.starts_with('.') || version.contains(['/', '\\', '\0']) {
        Err(SourceError::BadVersion { module: module.to_string(), version: version.to_string() })
    } else {
        Ok(())
    }
}

/// The store's file at `path`, opened; `None` when it cannot be (as if absent).
async fn open_if_present(path: &Path) -> Option<Content> {
    OpenFile::open(path).await.ok().flatten().map(Content::File)
}

fn parse_list(text: &str) -> impl Iterator<Item = Version> + '_ {
    text.lines().filter_map(|l| Version::parse(l.trim()))
}

fn newest_visible(list: &[u8], module: &str, hidden: &Unpublished) -> Option<Version> {
    String::from_utf8_lossy(list)
        .lines()
        .map(str::trim)
        .filter(|v| !hidden.is_hidden(module, v))
        .filter_map(Version::parse)
        .max()
}

/// The `Version` field of an `.info` / `@latest` answer.
fn info_version(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    serde_json::from_slice::<Info>(body).ok().map(|i| i.version)
}

/// Writes `body` to `path` through a temporary file in the same folder and a
/// rename, so a reader never sees a partial answer.
fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goproxy::server::{ProxyConfig, ProxyServer};

    /// A store holding `example.com/BigMod` v1.0.0 and v1.1.0 (capital letters escaped on disk).
    fn upstream_store(root: &Path) {
        let v = root.join("example.com/!big!mod/@v");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("list"), "v1.0.0\nv1.1.0\n").unwrap();
        for ver in ["v1.0.0", "v1.1.0"] {
            std::fs::write(v.join(format!("{ver}.info")), format!("{{\"Version\":\"{ver}\"}}\n")).unwrap();
            std::fs::write(v.join(format!("{ver}.mod")), "module example.com/BigMod\n").unwrap();
            std::fs::write(v.join(format!("{ver}.zip")), format!("zip of {ver}")).unwrap();
        }
    }

    /// The smallest store `StoreLayout::validate` accepts: one module with no versions.
    pub(crate) fn empty_store(root: &Path) {
        let v = root.join("example.invalid/empty/@v");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("list"), "").unwrap();
    }

    async fn fake_upstream() -> (tempfile::TempDir, ProxyServer) {
        let dir = tempfile::tempdir().unwrap();
        upstream_store(dir.path());
        let server = ProxyServer::start(ProxyConfig::loopback(dir.path(), 0)).await.unwrap();
        (dir, server)
    }

    async fn found(l: Lookup) -> (Vec<u8>, ServedFrom) {
        match l.into_memory().await {
            Lookup::Found { body, from } => (body.to_vec(), from),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn what_the_store_lacks_comes_from_the_upstream_then_from_the_cache_folder() {
        let (_up_dir, up) = fake_upstream().await;
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        empty_store(store.path());
        let upstream = Upstream::new(up.url(), cache.path());
        let source = ModuleSource::new(StoreLayout::new(store.path()), Some(&upstream)).unwrap();

        let (body, from) = found(source.version_file("example.com/BigMod", "v1.1.0", VersionFile::Zip).await).await;
        assert_eq!((body.as_slice(), from), (&b"zip of v1.1.0"[..], ServedFrom::Upstream));
        let kept = upstream.cache_folder().join("example.com/!big!mod/@v/v1.1.0.zip");
        assert_eq!(std::fs::read(&kept).unwrap(), b"zip of v1.1.0", "kept under the escaped path");
        let (body, from) = found(source.version_file("example.com/BigMod", "v1.1.0", VersionFile::Zip).await).await;
        assert_eq!((body.as_slice(), from), (&b"zip of v1.1.0"[..], ServedFrom::UpstreamCache));
        assert_eq!(up.log().len(), 1, "the second answer did not reach the upstream");

        // The store's own module never reaches the upstream.
        let (body, from) = found(source.list("example.invalid/empty").await).await;
        assert_eq!((body.len(), from), (0, ServedFrom::Store));
        assert!(matches!(source.version_file("example.com/BigMod", "v9.0.0", VersionFile::Mod).await, Lookup::NotFound));
        assert!(!upstream.cache_folder().join("example.com/!big!mod/@v/v9.0.0.mod").exists(), "a 404 is not kept");
        let names: Vec<_> = std::fs::read_dir(upstream.cache_folder().join("example.com/!big!mod/@v")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp-")), "no temporary file is left: {names:?}");
        up.stop().await;
    }

    #[tokio::test]
    async fn versions_join_the_store_and_the_upstream_and_ensure_names_the_folder_holding_a_version() {
        let (_up_dir, up) = fake_upstream().await;
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The store has v1.0.0 of the module; the upstream has v1.0.0 and v1.1.0.
        upstream_store(store.path());
        let v = store.path().join("example.com/!big!mod/@v");
        std::fs::write(v.join("list"), "v1.0.0\n").unwrap();
        for ext in ["info", "mod", "zip"] {
            std::fs::remove_file(v.join(format!("v1.1.0.{ext}"))).unwrap();
        }
        let source = ModuleSource::new(StoreLayout::new(store.path()), Some(&Upstream::new(up.url(), cache.path()))).unwrap();
        let versions: Vec<String> = source.versions("example.com/BigMod").await.unwrap().iter().map(|v| v.as_str().to_string()).collect();
        assert_eq!(versions, ["v1.0.0", "v1.1.0"]);
        assert!(source.versions("example.com/nothing").await.unwrap().is_empty());

        let held = source.ensure("example.com/BigMod", "v1.0.0").await.unwrap();
        assert_eq!(held.root(), store.path());
        let held = source.ensure("example.com/BigMod", "v1.1.0").await.unwrap();
        assert_eq!(held.root(), source.cache().unwrap().root());
        for ext in ["info", "mod", "zip"] {
            assert!(held.file("example.com/BigMod", "v1.1.0", ext).is_file(), "{ext}");
        }
        let err = source.ensure("example.com/BigMod", "v2.0.0").await.unwrap_err();
        assert!(matches!(err, SourceError::NotFound { .. }) && err.to_string().contains(up.url().as_str()), "{err}");
        assert!(matches!(source.ensure("../x", "v1.0.0").await, Err(SourceError::BadModulePath(_))));
        assert!(matches!(source.ensure("a.com/x", "../v1").await, Err(SourceError::BadVersion { .. })));

        let alone = ModuleSource::new(StoreLayout::new(store.path()), None).unwrap();
        assert!(matches!(alone.ensure("example.com/BigMod", "v1.1.0").await, Err(SourceError::NotFound { upstream: None, .. })));
        up.stop().await;
    }

    #[tokio::test]
    async fn an_unreachable_upstream_fails_naming_it_and_a_silent_one_times_out() {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        empty_store(store.path());
        let source = ModuleSource::new(StoreLayout::new(store.path()), Some(&Upstream::new(&url, cache.path()))).unwrap();
        match source.version_file("example.com/x", "v1.0.0", VersionFile::Zip).await {
            Lookup::Failed(m) => assert!(m.contains(&url), "{m}"),
            other => panic!("{other:?}"),
        }
        let err = source.versions("example.com/x").await.unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");

        // A server that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let mut upstream = Upstream::new(&url, cache.path());
        upstream.timeout = std::time::Duration::from_millis(300);
        let source = ModuleSource::new(StoreLayout::new(store.path()), Some(&upstream)).unwrap();
        let started = std::time::Instant::now();
        match source.version_file("example.com/x", "v1.0.0", VersionFile::Info).await {
            Lookup::Failed(m) => assert!(m.contains(&url) && m.contains("within"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        hold.abort();
    }

    #[tokio::test]
    async fn latest_skips_a_hidden_upstream_version() {
        let (_up_dir, up) = fake_upstream().await;
        let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        empty_store(store.path());
        let source = ModuleSource::new(StoreLayout::new(store.path()), Some(&Upstream::new(up.url(), cache.path()))).unwrap();
        let hidden = Unpublished::default();
        let (body, _) = found(source.latest("example.com/BigMod", &hidden).await).await;
        assert_eq!(info_version(&body).as_deref(), Some("v1.1.0"));
        hidden.set([("example.com/BigMod".to_string(), "v1.1.0".to_string())]);
        let (body, from) = found(source.latest("example.com/BigMod", &hidden).await).await;
        assert_eq!(info_version(&body).as_deref(), Some("v1.0.0"));
        assert_eq!(from, ServedFrom::Upstream);
        up.stop().await;
    }

    #[test]
    fn served_from_reads_as_kebab_case() {
        assert_eq!(serde_json::to_string(&ServedFrom::UpstreamCache).unwrap(), "\"upstream-cache\"");
        assert_eq!(serde_json::to_string(&ServedFrom::None).unwrap(), "\"none\"");
        assert_eq!(serde_json::from_str::<ServedFrom>("\"store\"").unwrap(), ServedFrom::Store);
        for from in [ServedFrom::Store, ServedFrom::Upstream, ServedFrom::UpstreamCache, ServedFrom::None] {
            assert_eq!(serde_json::to_string(&from).unwrap(), format!("\"{}\"", from.as_str()));
        }
    }
}
