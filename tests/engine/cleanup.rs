//! Cleanup removes what layerbench labelled and nothing else; engine errors are clear.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::process::Command;

#[tokio::test]
async fn cleanup_removes_labelled_images_and_leaves_an_unrelated_image_alone() {
    let _guard = common::engine_lock();
    let (engine, _store) = common::provisioned().await;

    // An unrelated image: a one-file root filesystem with no labels.
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("rootfs.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        let mut header = tar::Header::new_gnu();
        let data = b"not made by layerbench\n";
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "hello.txt", &data[..]).unwrap();
        builder.finish().unwrap();
    }
    let unrelated = engine.import_rootfs(&tar_path, vec![]).await.unwrap();
    engine.tag(&unrelated, "layerbench-test/unrelated:keep").await.unwrap();

    // A labelled one, made the way the harness makes builds.
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n").unwrap();
    std::fs::write(app.path().join("hello.txt"), "hi\n").unwrap();
    let context = layerbench::engine::ContextSource::new(app.path(), std::path::Path::new("Dockerfile"), layerbench::engine::Builder::Buildkit, layerbench::context::IgnoreDialect::of_engine(&engine.version), layerbench::context::ContextTransfer::Session).unwrap();
    let request = layerbench::engine::BuildRequest {
        what: "cleanup fixture".into(),
        context,
        tag: "layerbench-test/labelled:remove".into(),
        target: None,
        build_args: Default::default(),
        labels: Default::default(),
        network_mode: "none".into(),
        no_cache: false,
    };
    let (image, _, _) = engine.build(request, &mut |_| {}).await.unwrap().into_image("fixture").unwrap();
    assert_eq!(image.labels.get(layerbench::engine::MANAGED_LABEL).map(String::as_str), Some("true"));

    let removed = engine.remove_labelled(Some(&["build", "selftest", "run"]), None).await.unwrap();
    assert!(removed.iter().any(|r| r.contains("layerbench-test/labelled:remove")), "{removed:?}");
    assert!(engine.image("layerbench-test/labelled:remove").await.unwrap().is_none());
    assert!(engine.image("layerbench-test/unrelated:keep").await.unwrap().is_some(), "the unrelated image was removed");
    assert!(engine.image(layerbench::images::GOLANG_IMAGE).await.unwrap().is_some(), "base images are kept by default");

    engine.remove_image(&unrelated).await.unwrap();
}

#[test]
fn without_an_engine_the_command_fails_at_once_naming_what_it_tried() {
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .arg("images")
        .env("DOCKER_HOST", "unix:///nonexistent/layerbench-test.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Docker engine answered at unix:///nonexistent/layerbench-test.sock"), "{stderr}");
    assert!(stderr.contains("scripts/setup-engine.sh"), "{stderr}");
}
