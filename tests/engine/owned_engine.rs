//! An engine layerbench owns, through the binary and the library: started beside the host's engine without touching it, built on by both builders through a loopback proxy, emptied to truly cold, and stopped leaving nothing behind.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use layerbench::engine::owned::{self, EngineLayout};
use layerbench::context::ContextTransfer;
use layerbench::engine::{BuildRequest, Builder, ContextSource, Engine, EngineError, StepReport};
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};
use layerbench::paths;

const PROXY_PORT: u16 = 48231;

fn layerbench(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench")).args(args).output().expect("the layerbench binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Stops the engine when the test ends, passed or not, so a failure leaves no dockerd behind.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if EngineLayout::new(&paths::engines_dir(), &self.0).dir.exists() {
            let _ = layerbench(&["engine", "stop", "--name", &self.0]);
        }
    }
}

/// What the host's default engine and network look like: images, networks, firewall rules, forwarding.
async fn host_snapshot() -> Vec<String> {
    let engine = Engine::connect_spec("default").await.expect("the default engine answers");
    let mut facts = Vec::new();
    for (what, args) in [("image", &["images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"][..]), ("network", &["network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}}"][..])] {
        let out = Command::new("/usr/bin/docker").args(args).env_remove("DOCKER_HOST").output().expect("/usr/bin/docker runs");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        facts.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("{what} {l}")));
    }
    if let Ok(out) = Command::new("iptables-save").output() {
        facts.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).map(|l| format!("iptables {l}")));
    }
    let links = Command::new("ip").args(["-o", "link"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    facts.extend(links.lines().filter_map(|l| l.split(':').nth(1)).map(|name| format!("link {}", name.trim())));
    facts.push(format!("ip_forward {}", std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default().trim()));
    assert!(engine.answers().await);
    facts.sort();
    facts
}

/// The tiny app's no-compile template (layered's steps but the compile: what these builds show is the engine's cache
/// and the proxy, not Go's), its context as `engine`'s CLI sends it.
fn tiny_build(engine: &Engine, proxy_url: &str, builder: Builder, tag: &str) -> BuildRequest {
    tiny_build_of(engine, common::NO_COMPILE, proxy_url, builder, tag)
}

/// The tiny app's template `variant` (`dockerfiles/<variant>.Dockerfile`), its context as `engine`'s CLI sends it.
fn tiny_build_of(engine: &Engine, variant: &str, proxy_url: &str, builder: Builder, tag: &str) -> BuildRequest {
    tiny_build_by(engine, variant, proxy_url, builder, tag, ContextTransfer::Session)
}

/// As `tiny_build_of`, BuildKit's context sent by `transfer`.
fn tiny_build_by(engine: &Engine, variant: &str, proxy_url: &str, builder: Builder, tag: &str, transfer: ContextTransfer) -> BuildRequest {
    let app = common::tiny_app();
    let dockerfile = PathBuf::from(format!("dockerfiles/{variant}.Dockerfile"));
    let dialect = layerbench::context::IgnoreDialect::of_engine(&engine.version);
    let context = ContextSource::new(&app, &dockerfile, builder, dialect, transfer).expect("the tiny app's context");
    BuildRequest {
        what: format!("tiny-app on an owned engine ({})", builder.name()),
        context,
        tag: tag.to_string(),
        target: None,
        build_args: [("GOPROXY".to_string(), proxy_url.to_string()), ("GOSUMDB".to_string(), "off".to_string())].into(),
        labels: Default::default(),
        network_mode: "host".into(),
        no_cache: false,
    }
}

/// The Dockerfile steps (not the builder's internal ones) and whether each came from the cache.
fn steps(reports: &[StepReport]) -> Vec<(String, bool)> {
    reports.iter().filter(|s| s.name.contains("RUN") || s.name.contains("COPY")).map(|s| (s.name.clone(), s.cached)).collect()
}

#[tokio::test]
async fn an_owned_engine_builds_with_both_builders_empties_to_cold_and_stops_leaving_nothing_while_the_host_engine_is_untouched() {
    let _guard = common::engine_lock();
    let name = format!("lbt-{}", std::process::id());
    let layout = EngineLayout::new(&paths::engines_dir(), &name);
    let before = host_snapshot().await;

    let stop_on_drop = StopOnDrop(name.clone());
    let (ok, out) = layerbench(&["engine", "start", "--name", &name]);
    assert!(ok, "engine start failed:\n{out}");
    assert!(out.contains(&format!("DOCKER_HOST=unix://{}", layout.socket.display())), "start prints how to use it:\n{out}");
    let (ok, out) = layerbench(&["engine", "start", "--name", &name]);
    assert!(!ok && out.contains("already running"), "a second start of the same name is refused:\n{out}");
    let (ok, listed) = layerbench(&["engine", "ls"]);
    assert!(ok && listed.lines().any(|l| l.starts_with(&name) && l.contains("running")), "{listed}");

    let engine = Engine::connect_spec(&name).await.expect("the owned engine answers");
    assert!(engine.is_owned() && engine.name() == name);
    let state = owned::read_state(&paths::engines_dir(), &name).unwrap().expect("a state file");
    assert_eq!(state.base_images.len(), 2, "both base images were loaded and recorded");
    assert_eq!(engine.image_count().await.unwrap(), 2, "the new engine holds only its base images");

    // Both builders reach the module proxy on loopback (network mode host, no bridge in this engine).
    let store = paths::store_dir();
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, PROXY_PORT)).await.expect("the proxy starts");
    let tag = format!("layerbench/owned-engine-test:{}", std::process::id());
    let mut first = Vec::new();
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let mark = proxy.log().len();
        let outcome = engine.build(tiny_build(&engine, &proxy.url(), builder, &tag), &mut |_| {}).await.expect("the engine answers");
        let (_, reports, _) = outcome.into_image(&format!("tiny-app ({})", builder.name())).expect("the build succeeds");
        let fetched = proxy.log().since(mark);
        assert!(fetched.iter().any(|r| r.path.ends_with(".zip") && r.status == 200), "{} fetched the modules through the loopback proxy: {fetched:?}", builder.name());
        assert!(steps(&reports).iter().all(|(_, cached)| !cached), "a fresh engine has nothing cached for {}: {reports:?}", builder.name());
        if builder == Builder::Buildkit {
            first = steps(&reports);
        }
    }
    // Built again: the cache of this engine answers.
    let again = engine.build(tiny_build(&engine, &proxy.url(), Builder::Buildkit, &tag), &mut |_| {}).await.unwrap();
    let (_, reports, _) = again.into_image("tiny-app again").unwrap();
    assert!(steps(&reports).iter().all(|(_, cached)| *cached), "a rebuild is cached before emptying: {reports:?}");

    let emptied = engine.empty().await.expect("an owned engine can be emptied");
    assert!(emptied.images >= 1 && emptied.cache_records >= 1 && emptied.kept_images == 2, "{emptied:?}");
    assert_eq!(engine.image_count().await.unwrap(), 2, "only the base images are left");
    let cold = engine.build(tiny_build(&engine, &proxy.url(), Builder::Buildkit, &tag), &mut |_| {}).await.unwrap();
    let (_, reports, _) = cold.into_image("tiny-app after empty").unwrap();
    let cold_steps = steps(&reports);
    assert_eq!(cold_steps.len(), first.len(), "{cold_steps:?} vs {first:?}");
    assert!(cold_steps.iter().all(|(_, cached)| !cached), "after empty() no step is cached: {reports:?}");
    proxy.stop().await;

    let (ok, out) = layerbench(&["clean", "--engine", &name]);
    assert!(ok && out.contains("base images kept"), "{out}");
    assert_eq!(engine.image_count().await.unwrap(), 2);

    let (ok, out) = layerbench(&["engine", "stop", "--name", &name]);
    assert!(ok, "engine stop failed:\n{out}");
    drop(stop_on_drop);
    let roots: Vec<PathBuf> = vec![layout.dir.clone(), state.exec_root.clone()];
    assert_eq!(owned::processes_referencing(&roots), Vec::<u32>::new(), "no dockerd, containerd or shim of it is left");
    assert!(!owned::dockerd_alive(state.pid.expect("a pid while running"), &state.socket), "its dockerd is gone");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(layout.dir.to_str().unwrap()), "no mount under its folder is left");
    assert!(!layout.dir.exists() && !state.socket.exists(), "its folder and socket are gone");
    assert!(!engine.answers().await);

    assert_eq!(host_snapshot().await, before, "the host's default engine, networks and firewall rules are unchanged");
}

#[tokio::test]
async fn a_name_that_is_not_running_tells_how_to_start_it_and_the_default_engine_is_never_emptied() {
    let err = Engine::connect_spec("lbt-never-started").await.unwrap_err();
    assert!(matches!(err, EngineError::NotRunning { .. }), "{err}");
    assert!(err.to_string().contains("layerbench engine start --name lbt-never-started"), "{err}");
    let (ok, out) = layerbench(&["engine", "stop", "--name", "lbt-never-started"]);
    assert!(!ok && out.contains("owns no engine named lbt-never-started"), "{out}");
    let (ok, out) = layerbench(&["engine", "start", "--name", "Bad_Name"]);
    assert!(!ok && out.contains("\"Bad_Name\" is not an engine name"), "{out}");

    let default = Engine::connect_spec("default").await.expect("the default engine answers");
    assert!(!default.is_owned() && default.name() == "default");
    let err = default.empty().await.unwrap_err();
    assert!(err.to_string().contains("refusing to empty the engine default"), "{err}");
}

#[test]
fn a_dockerd_that_does_not_answer_is_reported_with_the_end_of_its_log_and_leaves_nothing() {
    let fake = tempfile::tempdir().unwrap();
    let dockerd = fake.path().join("dockerd");
    std::fs::write(&dockerd, "#!/bin/sh\necho \"fake dockerd: refusing $*\" >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&dockerd, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", fake.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .args(["engine", "start", "--name", "lbt-broken"])
        .env("PATH", path)
        .env("LAYERBENCH_CACHE", cache.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let log = cache.path().join("engines/lbt-broken/dockerd.log");
    assert!(text.contains("did not answer") && text.contains("it exited") && text.contains(&log.display().to_string()), "{text}");
    assert!(text.contains("fake dockerd: refusing") && text.contains("--bridge=lb") && text.contains("--iptables=false --ip-masq=false"), "the log's last lines are quoted: {text}");
    assert!(!cache.path().join("engines/lbt-broken").exists(), "nothing is left of the engine that did not start");
}

/// The processes whose root folder is `root` (a dockerd of another release and what it started run chrooted there).
fn processes_rooted_in(root: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root))
        .collect()
}

#[tokio::test]
async fn a_docker_26_engine_with_the_containerd_image_store_builds_legacy_is_inspected_builds_buildkit_through_the_session_not_a_tar_and_stops_leaving_nothing() {
    let _guard = common::engine_lock();
    let name = format!("lbt-cd-{}", std::process::id());
    let layout = EngineLayout::new(&paths::engines_dir(), &name);
    let root = layerbench::engine::release::root_dir(&paths::cache_dir(), "trixie");
    let before = host_snapshot().await;
    // Other engines of that release (the tests' `lbt-modern`) run from the same root.
    let others = processes_rooted_in(&root);
    let (ok, out) = layerbench(&["engine", "start", "--name", &name, "--image-store", "containerd"]);
    assert!(!ok && out.contains("needs Docker 24 or later"), "the host's Docker 20.10 has no containerd image store:\n{out}");

    let stop_on_drop = StopOnDrop(name.clone());
    let (ok, out) = layerbench(&["engine", "start", "--name", &name, "--release", "trixie", "--image-store", "containerd"]);
    assert!(ok, "engine start failed:\n{out}");
    assert!(out.contains("dockerd 26.1") && out.contains("(API 1.45, trixie)") && out.contains("containerd image store"), "{out}");
    let (ok, listed) = layerbench(&["engine", "ls"]);
    let line = listed.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("{listed}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert!(ok && columns[1..7] == ["running", "trixie", "26.1.5+dfsg1", "1.45", "~0.13", "containerd"], "{listed}");
    let state = owned::read_state(&paths::engines_dir(), &name).unwrap().expect("a state file");
    assert_eq!(state.root.as_deref(), Some(root.as_path()));
    let engine = Engine::connect_spec(&name).await.expect("the engine answers");
    assert_eq!(engine.machine().await.unwrap().image_store, "containerd");
    assert!(processes_rooted_in(&root).contains(&state.pid.expect("a pid while running")), "its dockerd runs from the trixie root");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(root.to_str().unwrap()), "its mounts live in its own namespace, not the host's");

    let store = paths::store_dir();
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, PROXY_PORT)).await.expect("the proxy starts");
    let tag = format!("layerbench/owned-engine-test:cd-{}", std::process::id());
    // The single-stage template keeps its download and build layers, for inspection to read.
    let outcome = engine.build(tiny_build_of(&engine, "naive", &proxy.url(), Builder::Legacy, &tag), &mut |_| {}).await.expect("the engine answers");
    let (_, reports, _) = outcome.into_image("tiny-app (legacy, containerd store)").expect("the legacy builder works on the containerd store");
    assert!(steps(&reports).iter().all(|(_, cached)| !cached), "{reports:?}");
    // Inspection reads what this store exports: the OCI layout.
    let sizes = engine.layer_sizes(&tag).await.unwrap();
    assert!(sizes.iter().any(|(created_by, size)| created_by.contains("go build") && *size > 0), "{sizes:?}");
    let saved = engine
        .read_saved_image(&tag, |saved| layerbench::saved_image::saved_layer_contents(saved, &|c: &str| c.contains("go mod download") || c.contains("go build")))
        .await
        .expect("the exported image is read");
    assert_eq!(saved.format, layerbench::saved_image::SavedFormat::OciLayout);
    assert!(saved.layers.iter().any(|l| l.module_cache_bytes > 0), "{:?}", saved.layers);
    let tar = tiny_build_by(&engine, "layered", &proxy.url(), Builder::Buildkit, &tag, ContextTransfer::Tar);
    let buildkit = engine.build(tar, &mut |_| {}).await.expect("the engine answers");
    let err = buildkit.into_image("tiny-app (BuildKit, containerd store, tar)").expect_err("BuildKit cannot read an uploaded tar on this store");
    assert!(err.to_string().contains("cannot read a context uploaded as a tar") && err.to_string().contains("--context-transfer session"), "{err}");
    // Through the build's session, as the Docker CLI sends it, BuildKit builds there; the rebuild is all cached.
    for (round, cached) in [("cold", false), ("again", true)] {
        let outcome = engine.build(tiny_build(&engine, &proxy.url(), Builder::Buildkit, &tag), &mut |_| {}).await.expect("the engine answers");
        let sent = outcome.context.clone().expect("the session's log");
        let (_, reports, _) = outcome.into_image(&format!("tiny-app (BuildKit, containerd store, session, {round})")).expect("BuildKit builds through the session");
        assert!(steps(&reports).iter().all(|(_, c)| *c == cached), "{round}: {reports:?}");
        assert!(sent.contents.files.contains_key("main.go"), "{round}: the context listed main.go: {:?}", sent.files);
    }
    proxy.stop().await;

    let (ok, out) = layerbench(&["engine", "stop", "--name", &name]);
    assert!(ok, "engine stop failed:\n{out}");
    drop(stop_on_drop);
    let left: Vec<u32> = processes_rooted_in(&root).into_iter().filter(|p| !others.contains(p)).collect();
    assert_eq!(left, Vec::<u32>::new(), "nothing of it runs from the trixie root any more");
    assert_eq!(owned::processes_referencing(&[layout.dir.clone(), state.exec_root.clone()]), Vec::<u32>::new());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(layout.dir.to_str().unwrap()) && !mountinfo.contains(root.to_str().unwrap()), "no mount is left");
    assert!(!layout.dir.exists() && !state.socket.exists(), "its folder and socket are gone");
    assert!(!Path::new("/sys/class/net").join(owned::bridge_name(&name)).exists(), "its bridge is gone");
    assert_eq!(host_snapshot().await, before, "the host's default engine, networks and firewall rules are unchanged");
}
