//! The base-image stand-ins against what the images they replace hold: the golang image's packages and
//! environment, distroless's users, certificates, time zones and glibc. Drives the real engine.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::time::Duration;

use layerbench::images::{ensure_images, stand_in, GOLANG_IMAGE_PACKAGES};
use layerbench::paths;

#[tokio::test]
async fn the_golang_stand_in_has_the_official_images_packages_and_environment() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    // `-bookworm` is another name of the same image: it is tagged onto it, not built again.
    let images = ensure_images(&engine, &["golang:1.23-bookworm".to_string()], false, &paths::cache_dir(), &paths::debian_mirror()).await.unwrap();
    let facts = engine.image("golang:1.23-bookworm").await.unwrap().expect("made");
    assert_eq!(Some(&facts.id), engine.image_id("golang:1.23").await.unwrap().as_ref(), "one image under both names");
    assert_eq!(images[0].id, facts.id);

    let env = |name: &str| facts.env.iter().find_map(|e| e.strip_prefix(&format!("{name}="))).map(str::to_string);
    assert_eq!(env("GOPATH").as_deref(), Some("/go"), "{:?}", facts.env);
    assert_eq!(env("GOTOOLCHAIN").as_deref(), Some("local"));
    assert!(env("GOLANG_VERSION").is_some_and(|v| v.starts_with("1.23.")), "{:?}", facts.env);
    assert!(env("PATH").is_some_and(|p| p.starts_with("/go/bin:/usr/local/go/bin:")), "{:?}", facts.env);
    assert_eq!(facts.working_dir, "/go");

    let installed = engine
        .run_to_completion(&facts.id, &["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"], "none", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(installed.exit_code, 0, "{}", installed.output);
    let installed: Vec<&str> = installed.output.lines().filter_map(|l| l.strip_suffix(" installed")).collect();
    let missing: Vec<&str> = GOLANG_IMAGE_PACKAGES.iter().copied().filter(|p| !installed.contains(p)).collect();
    assert!(missing.is_empty(), "the official image's packages missing from the stand-in: {missing:?}");

    // What a real repository's build step runs: make, a C compiler for cgo, the go command on PATH, git.
    let tools = engine
        .run_to_completion(&facts.id, &["sh", "-c", "make --version && gcc --version && git --version && go env GOROOT GOPATH && pwd"], "none", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(tools.exit_code, 0, "{}", tools.output);
    assert!(tools.output.contains("GNU Make") && tools.output.trim_end().ends_with("/go"), "{}", tools.output);
}

#[tokio::test]
async fn distroless_stand_ins_hold_users_certificates_time_zones_and_for_base_glibc() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    let names = ["gcr.io/distroless/static-debian12", "gcr.io/distroless/base:nonroot"].map(String::from);
    ensure_images(&engine, &names, false, &paths::cache_dir(), &paths::debian_mirror()).await.unwrap();

    let static_root = engine.image("gcr.io/distroless/static-debian12:latest").await.unwrap().expect("made");
    assert!(static_root.user.is_empty() || static_root.user == "0", "latest runs as root: {:?}", static_root.user);
    let base = engine.image("gcr.io/distroless/base:nonroot").await.unwrap().expect("made");
    assert_eq!((base.user.as_str(), base.working_dir.as_str()), ("65532", "/home/nonroot"));
    assert!(base.env.iter().any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"), "{:?}", base.env);

    for image in ["gcr.io/distroless/static-debian12:latest", "gcr.io/distroless/base:nonroot"] {
        let passwd = engine.read_file_from_image(image, "/etc/passwd").await.unwrap().expect("an /etc/passwd");
        let passwd = String::from_utf8(passwd).unwrap();
        assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "{image}: {passwd}");
        let bundle = engine.read_file_from_image(image, "/etc/ssl/certs/ca-certificates.crt").await.unwrap().expect("a CA bundle");
        assert!(bundle.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"), "{image}");
        let utc = engine.read_file_from_image(image, "/usr/share/zoneinfo/Etc/UTC").await.unwrap().expect("tzdata");
        assert!(utc.starts_with(b"TZif"), "{image}");
        let shell = engine.read_file_from_image(image, "/bin/sh").await.unwrap();
        assert!(shell.is_none(), "{image}: distroless has no shell");
    }
    let libc = engine.read_file_from_image("gcr.io/distroless/base:nonroot", "/lib/x86_64-linux-gnu/libc.so.6").await.unwrap();
    assert!(libc.is_some(), "base holds glibc");
    let libc = engine.read_file_from_image("gcr.io/distroless/static-debian12:latest", "/lib/x86_64-linux-gnu/libc.so.6").await.unwrap();
    assert!(libc.is_none(), "static holds no glibc");
    // glibc runs: its loader, as the nonroot user the image names.
    let loader = engine.run_to_completion("gcr.io/distroless/base:nonroot", &["/lib64/ld-linux-x86-64.so.2", "--version"], "none", Duration::from_secs(60)).await.unwrap();
    assert!(loader.exit_code == 0 && loader.output.contains("ld.so"), "{}", loader.output);
}

#[tokio::test]
async fn an_image_with_no_stand_in_is_refused_with_how_to_provide_it() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    assert_eq!(stand_in("example.org/nowhere/app:1"), None);
    let err = ensure_images(&engine, &["example.org/nowhere/app:1".to_string()], false, &paths::cache_dir(), &paths::debian_mirror()).await.unwrap_err().to_string();
    assert!(err.contains("example.org/nowhere/app:1") && err.contains("docker load") && err.contains("layerbench images --pull"), "{err}");
}
