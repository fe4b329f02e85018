//! Pass-through: a proxy whose store lacks modules forwards to an upstream GOPROXY (a second layerbench proxy process), records where each answer came from, and answers again from its cache folder once the upstream is gone.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use layerbench::engine::{BuildRequest, Builder};
use layerbench::goproxy::layout::StoredModule;
use layerbench::goproxy::server::{ProxyConfig, ProxyRequest, ProxyServer, RequestKind, ServedFrom, Upstream};
use layerbench::goproxy::{escape_path, Recipe, StoreLayout};
use layerbench::{paths, setup};

/// A `layerbench proxy` process serving `store` on `port`, killed when dropped.
struct UpstreamProcess {
    child: tokio::process::Child,
    url: String,
}

impl UpstreamProcess {
    async fn start(store: &Path, port: u16) -> UpstreamProcess {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_layerbench"))
            .arg("proxy")
            .arg("--store")
            .arg(store)
            .args(["--port", &port.to_string()])
            // The upstream itself forwards nowhere.
            .env_remove("GOPROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the upstream proxy process");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return UpstreamProcess { child, url: format!("http://{addr}") };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the upstream proxy process exited with {status} before listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the upstream proxy process did not listen on {addr} within 10 s");
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill the upstream proxy process");
    }
}

/// The smallest store the proxy accepts: one module with no versions.
fn empty_store(root: &Path) {
    let v = root.join("example.invalid/empty/@v");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("list"), "").unwrap();
}

/// The real module store (built once from Debian's packages; no engine needed).
fn real_store() -> std::path::PathBuf {
    let store = paths::store_dir();
    setup::ensure_store(&Recipe::default_recipe(), &paths::debian_mirror(), &paths::cache_dir(), &store, false)
        .unwrap_or_else(|e| panic!("the module store could not be provisioned: {e}"));
    store
}


#[tokio::test]
async fn a_zip_missing_from_the_store_comes_from_the_upstream_process_and_then_from_the_cache_folder() {
    let real = real_store();
    let modules = StoreLayout::new(&real).validate().unwrap();
    // A module with capital letters if the store has one (escaping on both sides), else any.
    let with_versions = || modules.iter().filter(|m| !m.versions.is_empty());
    let StoredModule { path: module, versions } = with_versions()
        .find(|m| m.path.chars().any(|c| c.is_ascii_uppercase()))
        .or_else(|| with_versions().next())
        .expect("the real store holds a module version")
        .clone();
    let version = versions[0].clone();
    let expected = std::fs::read(StoreLayout::new(&real).file(&module, &version, "zip")).unwrap();

    let upstream = UpstreamProcess::start(&real, 48131).await;
    let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    empty_store(store.path());
    let mut config = ProxyConfig::loopback(store.path(), 0);
    config.upstream = Some(Upstream::new(&upstream.url, cache.path()));
    let upstream_url = upstream.url.clone();
    let proxy = ProxyServer::start(config).await.unwrap();
    let zip = format!("/{}/@v/{}.zip", escape_path(&module), escape_path(&version));

    let (status, body) = common::http_get(proxy.addr(), &zip).await;
    assert_eq!(status, 200);
    assert!(body == expected, "the zip of {module}@{version} differs from the upstream store's");
    upstream.kill().await;
    let (status, again) = common::http_get(proxy.addr(), &zip).await;
    assert_eq!(status, 200);
    assert!(again == expected, "the cached zip of {module}@{version} differs");
    // Something never fetched before now fails, naming the upstream that is gone.
    let (status, body) = common::http_get(proxy.addr(), &format!("/{}/@v/list", escape_path(&module))).await;
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains(&upstream_url), "{}", String::from_utf8_lossy(&body));

    let log = proxy.log().snapshot();
    let zip_record = |r: &ProxyRequest, from: ServedFrom| {
        assert_eq!(r.kind, RequestKind::Zip);
        assert_eq!((r.module.as_deref(), r.version.as_deref()), (Some(module.as_str()), Some(version.as_str())));
        assert_eq!((r.status, r.bytes, r.served_from), (200, expected.len() as u64, from));
    };
    zip_record(&log[0], ServedFrom::Upstream);
    zip_record(&log[1], ServedFrom::UpstreamCache);
    assert!(log[2].is_miss() && log[2].served_from == ServedFrom::None);
    proxy.stop().await;
}

#[tokio::test]
async fn a_build_through_an_empty_store_gets_every_module_from_the_upstream_and_rebuilds_from_the_cache_folder_without_it() {
    let _guard = common::engine_lock();
    let (engine, real) = common::provisioned().await;
    let upstream = UpstreamProcess::start(&real, 48133).await;
    let (store, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    empty_store(store.path());
    let mut config = ProxyConfig::loopback(store.path(), 48134);
    config.upstream = Some(Upstream::new(&upstream.url, cache.path()));
    let proxy = ProxyServer::start(config).await.unwrap();

    let app = common::tiny_app();
    let tag = format!("layerbench/upstream-test:{}", std::process::id());
    // The no-compile template: its `go mod download` fetches every zip of go.sum, and no compile follows it.
    let build = |no_cache: bool| {
        let context = layerbench::engine::ContextSource::new(&app, std::path::Path::new("dockerfiles/no-compile.Dockerfile"), Builder::Buildkit, layerbench::context::IgnoreDialect::of_engine(&engine.version), layerbench::context::ContextTransfer::Session).unwrap();
        BuildRequest {
            what: "tiny-app through an upstream".into(),
            context,
            tag: tag.clone(),
            target: None,
            build_args: [("GOPROXY".to_string(), proxy.url()), ("GOSUMDB".to_string(), "off".to_string())].into(),
            labels: Default::default(),
            network_mode: "host".into(),
            no_cache,
        }
    };
    let go_sum = std::fs::read_to_string(app.join("go.sum")).unwrap();
    let baseline: BTreeSet<String> = common::go_sum_entries(&go_sum)
        .into_iter()
        .filter(|(_, _, is_mod)| !is_mod)
        .map(|(m, v, _)| format!("{m}@{v}"))
        .collect();
    let zips = |requests: &[ProxyRequest]| -> BTreeSet<String> {
        requests
            .iter()
            .filter(|r| r.kind == RequestKind::Zip)
            .filter_map(|r| Some(format!("{}@{}", r.module.as_ref()?, r.version.as_ref()?)))
            .collect()
    };

    // no_cache: every module is fetched, whatever earlier runs left in the build cache.
    let first = engine.build(build(true), &mut |_| {}).await;
    let first_requests = proxy.log().snapshot();
    upstream.kill().await;
    let mark = proxy.log().len();
    let second = engine.build(build(true), &mut |_| {}).await;
    let second_requests = proxy.log().since(mark);
    engine.remove_image(&tag).await.unwrap();
    proxy.stop().await;

    first.unwrap().into_image("the first build").unwrap();
    assert_eq!(zips(&first_requests), baseline, "the first build fetched exactly the zips of go.sum");
    for r in &first_requests {
        assert!(!r.is_miss(), "{} was not answered: {}", r.path, r.status);
        if r.kind == RequestKind::Zip {
            assert_eq!(r.served_from, ServedFrom::Upstream, "{}", r.path);
        }
    }
    second.unwrap().into_image("the build without the upstream").unwrap();
    assert_eq!(zips(&second_requests), baseline, "the second build fetched the same zips");
    for r in &second_requests {
        assert!(!r.is_miss(), "{} was not answered without the upstream: {}", r.path, r.status);
        assert_eq!(r.served_from, ServedFrom::UpstreamCache, "{}", r.path);
    }
}

#[tokio::test]
async fn a_bump_to_the_next_release_finds_it_upstream_and_writes_the_upstream_hashes() {
    use layerbench::scenario::Scenario;
    use layerbench::workspace::{Applied, Layout, Workspace};

    let store = paths::store_dir();
    common::provisioned().await;
    let empty = tempfile::tempdir().unwrap();
    empty_store(empty.path());
    let upstream = ProxyServer::start(ProxyConfig::loopback(&store, 48137)).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut config = ProxyConfig::loopback(empty.path(), 48138);
    config.upstream = Some(Upstream::new(upstream.url(), cache.path()));
    let proxy = ProxyServer::start(config).await.unwrap();

    let app = common::tiny_app();
    let scratch = tempfile::tempdir().unwrap();
    let layout = Layout::new(&app, &app, &app.join("dockerfiles/layered.Dockerfile")).unwrap();
    let ws = Workspace::create(&layout, &scratch.path().join("tree"), None).unwrap();
    let scenario = Scenario::parse(
        "name = \"b\"\ndescription = \"d\"\n[[step]]\nname = \"bump\"\nchange = [{ kind = \"bump-module\", module = \"{first_direct_dependency}\", version = \"next\" }]\n",
        Path::new("(test)"),
    )
    .unwrap();
    let step = &scenario.steps[0];
    let empty_layout = StoreLayout::new(empty.path());
    let versions = layerbench::run::prefetch_bumps(&ws, step, &proxy.source(), &empty_layout).await.unwrap().expect("an upstream is configured");
    let mut applied = Applied::default();
    layerbench::run::apply_step(&ws, step, "n", &versions, &mut applied).unwrap();
    assert_eq!(applied.notes, ["github.com/BurntSushi/toml v1.2.0 -> v1.3.2 (first direct dependency, next)"]);
    let go_sum = std::fs::read_to_string(ws.root().join("go.sum")).unwrap();
    let zip = StoreLayout::new(&store).file("github.com/BurntSushi/toml", "v1.3.2", "zip");
    let hash = layerbench::gomod::sum::hash_zip(&zip).unwrap();
    assert!(go_sum.contains(&format!("github.com/BurntSushi/toml v1.3.2 {hash}")), "{go_sum}");
    let kept = Upstream::new(upstream.url(), cache.path()).cache_folder();
    assert!(StoreLayout::new(kept).file("github.com/BurntSushi/toml", "v1.3.2", "zip").is_file(), "the upstream's answer is kept");
    proxy.stop().await;
    upstream.stop().await;
}
