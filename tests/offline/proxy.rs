//! The module proxy over a store directory: answers, misses, shaping, and faults.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use layerbench::goproxy::server::{ProxyConfig, ProxyServer, RequestKind, Shaping};

fn tiny_store(root: &Path) {
    let v = root.join("example.com/!big!mod/@v");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("list"), "v1.0.0\nv1.1.0\n").unwrap();
    for ver in ["v1.0.0", "v1.1.0"] {
        std::fs::write(v.join(format!("{ver}.info")), format!("{{\"Version\":\"{ver}\"}}\n")).unwrap();
        std::fs::write(v.join(format!("{ver}.mod")), "module example.com/BigMod\n").unwrap();
        std::fs::write(v.join(format!("{ver}.zip")), vec![7u8; 64 * 1024]).unwrap();
    }
}


#[tokio::test]
async fn the_proxy_serves_the_store_and_records_every_request_including_misses() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path());
    let proxy = ProxyServer::start(ProxyConfig::loopback(dir.path(), 0)).await.unwrap();
    let addr = proxy.addr();

    let (status, body) = common::http_get(addr, "/example.com/%21big%21mod/@v/list").await;
    assert_eq!((status, body.as_slice()), (200, &b"v1.0.0\nv1.1.0\n"[..]));
    let (status, body) = common::http_get(addr, "/example.com/!big!mod/@v/v1.1.0.zip").await;
    assert_eq!((status, body.len()), (200, 64 * 1024));
    let (status, body) = common::http_get(addr, "/example.com/!big!mod/@latest").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("v1.1.0"));
    let (status, body) = common::http_get(addr, "/example.com/!big!mod/@v/v9.9.9.mod").await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).starts_with("not found:"));
    let (status, _) = common::http_get(addr, "/golang.org/x/absent/@v/list").await;
    assert_eq!(status, 404);

    let log = proxy.log().snapshot();
    assert_eq!(log.len(), 5);
    assert_eq!(log[1].kind, RequestKind::Zip);
    assert_eq!(log[1].module.as_deref(), Some("example.com/BigMod"));
    assert_eq!(log[1].version.as_deref(), Some("v1.1.0"));
    assert_eq!(log[1].bytes, 64 * 1024);
    assert!(log[3].is_miss() && log[4].is_miss() && !log[0].is_miss());
    proxy.stop().await;
}

#[tokio::test]
async fn shaping_adds_latency_and_caps_bandwidth() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path());
    let mut config = ProxyConfig::loopback(dir.path(), 0);
    config.shaping = Shaping { latency_ms: 150, bandwidth_bytes_per_sec: Some(256 * 1024) };
    let proxy = ProxyServer::start(config).await.unwrap();
    let started = Instant::now();
    let (status, body) = common::http_get(proxy.addr(), "/example.com/!big!mod/@v/v1.0.0.zip").await;
    let took = started.elapsed();
    assert_eq!((status, body.len()), (200, 64 * 1024));
    // 150 ms of latency plus 64 KiB at 256 KiB/s (250 ms): a lower bound that holds on any machine.
    assert!(took >= Duration::from_millis(150 + 200), "took only {took:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_port_in_use_and_a_directory_that_is_not_a_store_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path());
    let first = ProxyServer::start(ProxyConfig::loopback(dir.path(), 0)).await.unwrap();
    let err = ProxyServer::start(ProxyConfig::loopback(dir.path(), first.addr().port())).await.err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("already in use") && msg.contains("--proxy-port"), "{msg}");
    first.stop().await;

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README"), "hello").unwrap();
    let err = ProxyServer::start(ProxyConfig::loopback(empty.path(), 0)).await.err().unwrap();
    assert!(err.to_string().contains("not a GOPROXY-layout module store"), "{err}");

    let mut outside = ProxyConfig::loopback(dir.path(), 0);
    outside.addr = "0.0.0.0:0".parse().unwrap();
    assert!(ProxyServer::start(outside).await.err().unwrap().to_string().contains("loopback"));
}

#[tokio::test]
async fn an_unpublished_version_is_hidden_until_it_is_published() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path());
    let proxy = ProxyServer::start(ProxyConfig::loopback(dir.path(), 0)).await.unwrap();
    let hidden = proxy.unpublished();
    hidden.set([("example.com/BigMod".to_string(), "v1.1.0".to_string())]);
    let (_, body) = common::http_get(proxy.addr(), "/example.com/!big!mod/@v/list").await;
    assert_eq!(body, b"v1.0.0\n");
    let (_, body) = common::http_get(proxy.addr(), "/example.com/!big!mod/@latest").await;
    assert!(String::from_utf8_lossy(&body).contains("v1.0.0"));
    let (status, _) = common::http_get(proxy.addr(), "/example.com/!big!mod/@v/v1.1.0.zip").await;
    assert_eq!(status, 404);
    hidden.publish("example.com/BigMod", "v1.1.0");
    let (_, body) = common::http_get(proxy.addr(), "/example.com/!big!mod/@v/list").await;
    assert_eq!(body, b"v1.0.0\nv1.1.0\n");
    let (status, _) = common::http_get(proxy.addr(), "/example.com/!big!mod/@v/v1.1.0.zip").await;
    assert_eq!(status, 200);
    proxy.stop().await;
}
