//! The streamed build context: the same bytes and the same per-file states as the context made in memory, an error naming the file when one cannot be sent whole, and real builds through the streamed body.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use layerbench::context::{build_context, stream_context, ContextError, ContextFiles, IgnoreDialect};
use layerbench::engine::{BuildRequest, Builder, EngineError};
use layerbench::goproxy::server::{ProxyConfig, ProxyServer};

/// The proxy port this file's engine test uses.
const PORT: u16 = 48234;

/// Every Dockerfile of the fixture apps and the sample app, with its app folder.
fn app_dockerfiles() -> Vec<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for (app, folder) in [
        ("tests/fixtures/tiny-app", "dockerfiles"),
        ("tests/fixtures/why-app", "dockerfiles"),
        ("tests/fixtures/other-app", "build"),
        ("sample-go-app", "dockerfiles"),
    ] {
        let app = root.join(app);
        let mut dockerfiles: Vec<PathBuf> = std::fs::read_dir(app.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
            .collect();
        dockerfiles.sort();
        assert!(!dockerfiles.is_empty(), "{}: no Dockerfiles", app.display());
        out.extend(dockerfiles.into_iter().map(|d| (app.clone(), d)));
    }
    out
}

/// A context of a few MiB: more chunks than the channel holds, so the walk waits for its reader.
fn several_chunks(root: &Path) -> (PathBuf, PathBuf) {
    let d = root.join("several-chunks");
    std::fs::create_dir_all(d.join("data/nested")).unwrap();
    std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    for n in 0..300u32 {
        let text: Vec<u8> = (0..(n * 37 % 5000)).map(|i| (i * 7 + n) as u8).collect();
        std::fs::write(d.join("data").join(format!("f{n:03}")), text).unwrap();
    }
    for n in 0..3u32 {
        let text: Vec<u8> = (0..(1u32 << 20) + n).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.join("data/nested").join(format!("big{n}")), text).unwrap();
    }
    let dockerfile = d.join("Dockerfile");
    (d, dockerfile)
}

async fn streamed(context: &Path, dockerfile: &Path, builder: Builder, dialect: IgnoreDialect) -> (Vec<u8>, String, layerbench::context::SentContext) {
    let stream = stream_context(context, dockerfile, builder, dialect).unwrap_or_else(|e| panic!("{}: {e}", context.display()));
    let name = stream.dockerfile().to_string();
    let (tar, sent) = stream.collect().await.unwrap_or_else(|e| panic!("{}: {e}", context.display()));
    (tar, name, sent)
}

#[tokio::test]
async fn the_streamed_context_is_byte_identical_to_the_one_made_in_memory_for_every_fixture_both_builders_and_both_dialects() {
    let root = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, PathBuf, PathBuf)> = common::context_fixtures::all(root.path())
        .into_iter()
        .map(|f| (f.name.to_string(), f.context, f.dockerfile))
        .collect();
    cases.extend(app_dockerfiles().into_iter().map(|(app, d)| (d.display().to_string(), app, d)));
    let (big, big_dockerfile) = several_chunks(root.path());
    cases.push(("several-chunks".into(), big, big_dockerfile));
    for (name, context, dockerfile) in &cases {
        let each = [Builder::Buildkit, Builder::Legacy].into_iter().flat_map(|b| [IgnoreDialect::Docker20, IgnoreDialect::Docker23].map(|d| (b, d)));
        for (builder, dialect) in each {
            let name = &format!("{name} ({dialect:?})");
            let whole = build_context(context, dockerfile, builder, dialect).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (tar, streamed_name, sent) = streamed(context, dockerfile, builder, dialect).await;
            assert!(!whole.files.is_empty(), "{name} ({builder:?}): an empty context");
            assert!(tar == whole.tar, "{name} ({builder:?}): {} streamed bytes differ from {} made in memory", tar.len(), whole.tar.len());
            assert_eq!(sent.bytes, tar.len() as u64, "{name} ({builder:?})");
            assert_eq!(streamed_name, whole.dockerfile, "{name} ({builder:?})");
            assert_eq!(sent.files, whole.files, "{name} ({builder:?})");
            // What the walk recorded is what reading the sent tar back finds.
            let read_back = ContextFiles::from_tar(&tar, builder, &streamed_name, dialect).unwrap();
            assert!(!read_back.files.is_empty(), "{name} ({builder:?})");
            assert_eq!(sent.contents, read_back, "{name} ({builder:?})");
            assert_eq!(whole.contents, read_back, "{name} ({builder:?})");
        }
    }
}

/// A context whose first file is `a.bin` (`size` bytes) and then `b.txt`.
fn two_files(root: &Path, size: u64) -> PathBuf {
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /c\n").unwrap();
    let mut a = std::fs::File::create(root.join("a.bin")).unwrap();
    let block: Vec<u8> = (0..1u32 << 16).map(|i| (i % 253) as u8).collect();
    for _ in 0..size / block.len() as u64 {
        a.write_all(&block).unwrap();
    }
    std::fs::write(root.join("b.txt"), "b").unwrap();
    root.join("Dockerfile")
}

/// Reads the body to its end; whether it ended with an error item.
async fn drain(body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>) -> bool {
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_file_that_shrinks_while_it_is_sent_ends_the_stream_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = two_files(dir.path(), 8 << 20);
    let (body, end) = stream_context(dir.path(), &dockerfile, Builder::Legacy, IgnoreDialect::default()).unwrap().into_body();
    let mut body = Box::pin(body);
    // The first chunk holds a.bin's header: the walk is inside a.bin, at most a few chunks ahead.
    assert!(body.next().await.unwrap().is_ok());
    std::fs::File::options().write(true).open(dir.path().join("a.bin")).unwrap().set_len(1000).unwrap();
    assert!(drain(body).await, "the body must end in an error, not look like a whole tar");
    let err = end.sent().await.unwrap_err();
    assert!(matches!(err, ContextError::Changed { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().join("a.bin").display().to_string()), "{err}");
}

#[tokio::test]
async fn a_file_removed_after_the_folder_was_listed_ends_the_stream_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = two_files(dir.path(), 8 << 20);
    let (body, end) = stream_context(dir.path(), &dockerfile, Builder::Buildkit, IgnoreDialect::default()).unwrap().into_body();
    let mut body = Box::pin(body);
    assert!(body.next().await.unwrap().is_ok());
    std::fs::remove_file(dir.path().join("b.txt")).unwrap();
    assert!(drain(body).await, "the body must end in an error");
    let err = end.sent().await.unwrap_err();
    assert!(err.to_string().contains(&dir.path().join("b.txt").display().to_string()), "{err}");
}

#[tokio::test]
async fn a_dropped_body_stops_the_walk() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = two_files(dir.path(), 8 << 20);
    let (body, end) = stream_context(dir.path(), &dockerfile, Builder::Legacy, IgnoreDialect::default()).unwrap().into_body();
    drop(body);
    let ended = tokio::time::timeout(Duration::from_secs(10), end.sent()).await.expect("the walk ends");
    assert!(matches!(ended, Err(ContextError::NotRead(_))), "{ended:?}");
}

/// Waits until this process holds `path` open (the walk's thread reading it), then truncates it.
fn truncate_once_open(path: PathBuf) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let open = std::fs::read_dir("/proc/self/fd")
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path));
            if open {
                std::fs::File::options().write(true).open(&path).unwrap().set_len(0).unwrap();
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    })
}

#[tokio::test]
async fn tiny_app_builds_through_the_streamed_body_with_both_builders_and_a_cut_context_fails_naming_the_file() {
    let _guard = common::engine_lock();
    let (engine, store) = common::provisioned().await;
    let proxy = ProxyServer::start(ProxyConfig::loopback(&store, PORT)).await.unwrap();
    let app = common::tiny_app();
    let dockerfile = Path::new("dockerfiles/layered.Dockerfile");
    let tag = format!("layerbench-test/context-stream:{}", std::process::id());
    let proxy_url = proxy.url();
    let request = |context, tag: &str| BuildRequest {
        what: format!("tiny-app through a streamed context ({tag})"),
        context,
        tag: tag.to_string(),
        target: None,
        build_args: [("GOPROXY".to_string(), proxy_url.clone()), ("GOSUMDB".to_string(), "off".to_string())].into(),
        labels: BTreeMap::from([("layerbench.test".to_string(), "context-stream".to_string())]),
        network_mode: "host".into(),
        no_cache: false,
    };
    let mut failures = Vec::new();
    let dialect = IgnoreDialect::of_engine(&engine.version);
    for builder in [Builder::Buildkit, Builder::Legacy] {
        let context = stream_context(&app, dockerfile, builder, dialect).unwrap();
        let outcome = engine.build(request(layerbench::engine::ContextSource::Tar(context), &tag), &mut |_| {}).await;
        let _ = engine.remove_image(&tag).await;
        match outcome {
            Ok(o) => {
                let whole = build_context(&app, dockerfile, builder, dialect).unwrap();
                let sent = o.context.clone().expect("the engine read the whole context");
                assert_eq!((sent.bytes, &sent.contents), (whole.tar.len() as u64, &whole.contents), "{builder:?}");
                if let Err(e) = o.into_image("tiny-app") {
                    failures.push(format!("{builder:?}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{builder:?}: {e}")),
        }
    }
    proxy.stop().await;

    // A file cut while the engine reads it: the build fails with an error naming the file, not a build of a cut tar.
    let dir = tempfile::tempdir().unwrap();
    let cut_dockerfile = two_files(dir.path(), 0);
    for builder in [Builder::Buildkit, Builder::Legacy] {
        std::fs::File::options().write(true).open(dir.path().join("a.bin")).unwrap().set_len(256 << 20).unwrap();
        let truncation = truncate_once_open(dir.path().join("a.bin"));
        let context = stream_context(dir.path(), &cut_dockerfile, builder, dialect).unwrap();
        let cut_tag = format!("{tag}-cut");
        let outcome = engine.build(request(layerbench::engine::ContextSource::Tar(context), &cut_tag), &mut |_| {}).await;
        let _ = engine.remove_image(&cut_tag).await;
        assert!(truncation.join().unwrap(), "{builder:?}: the walk never opened a.bin");
        match outcome {
            Err(e @ EngineError::Context { .. }) => assert!(e.to_string().contains("a.bin"), "{builder:?}: {e}"),
            Err(e) => failures.push(format!("{builder:?}: a cut context gave another error: {e}")),
            Ok(o) => failures.push(format!("{builder:?}: a cut context gave an outcome: image {:?}, failure {:?}", o.image.map(|i| i.id), o.failure)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
