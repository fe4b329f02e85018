//! The context layerbench sends makes `COPY . /ctx` see what `docker build` makes it see, with both builders, on the
//! host's engine (Docker 20.10, its CLI `/usr/bin/docker`) and on an owned Docker 26.1 engine (its own release's CLI).
//!
//! Each fixture folder is built by the Docker CLI (`DOCKER_BUILDKIT=1` and
//! `=0`) and by layerbench (BuildKit and legacy) with the same Dockerfile,
//! which lists `/ctx` (path, type, mode, owner, symlink target, size, link
//! count, modification time) into `/listing`; the listings of the CLI's image
//! and layerbench's image must be equal. Folder modification times are left
//! out: both builders stamp a folder with the time they write into it.
//!
//! Every build first writes its own tag into a layer (`NONCE`): the engine
//! keys layers by a digest of their tar, whose times are whole seconds, so
//! without it a `COPY` layer made in the same second by the other builder
//! could be reused, with that builder's sub-second times.
//!
//! layerbench follows the `.dockerignore` rules of the engine's release
//! (`IgnoreDialect::of_engine`): on Docker 26 regular-expression characters
//! are literal, an excluded folder keeps everything but what a `!` pattern
//! re-includes, and BuildKit's sync enters excluded folders for `!**/keep`.

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

use crate::common;

use std::collections::BTreeMap;

use common::context_fixtures::{dockerfile_in_an_ignored_folder, dockerfile_outside_bare, dockerfile_outside_with_ignore, everything_ignored, own_ignore_file, run, tree, Fixture};

use common::EngineUnderTest;
use layerbench::context::{ContextTransfer, IgnoreDialect};
use layerbench::engine::{BuildRequest, Builder, ContextSource, Engine};

const TAG_PREFIX: &str = "layerbench-test/context-parity";
const LISTING: &str = "/listing";
/// The image tags one test made on one engine; removed when it ends, passed or failed.
struct Tags<'a> {
    test: &'static str,
    on: &'a EngineUnderTest,
    made: Vec<String>,
}

impl<'a> Tags<'a> {
    fn new(test: &'static str, on: &'a EngineUnderTest) -> Tags<'a> {
        Tags { test, on, made: Vec::new() }
    }

    fn next(&mut self) -> String {
        let tag = format!("{TAG_PREFIX}:{}-{}-{}", self.test, std::process::id(), self.made.len());
        self.made.push(tag.clone());
        tag
    }
}

impl Drop for Tags<'_> {
    fn drop(&mut self) {
        if !self.made.is_empty() {
            let _ = self.on.cli(&[]).arg("rmi").arg("--force").args(&self.made).output();
        }
    }
}

fn cli_flag(builder: Builder) -> &'static str {
    match builder {
        Builder::Buildkit => "1",
        Builder::Legacy => "0",
    }
}

/// Builds with the engine's own Docker CLI and returns the image's listing of `/ctx`.
async fn listing_by_cli(on: &EngineUnderTest, fixture: &Fixture, builder: Builder, tags: &mut Tags<'_>) -> String {
    let tag = tags.next();
    let folders = [fixture.context.clone(), fixture.dockerfile.parent().expect("the Dockerfile's folder").to_path_buf()];
    run(on
        .cli(&folders)
        .env("DOCKER_BUILDKIT", cli_flag(builder))
        .args(["build", "--quiet", "--no-cache", "--label", "layerbench.test=context-parity", "--file"])
        .arg(&fixture.dockerfile)
        .args(["--tag", &tag, "--build-arg", &format!("NONCE={tag}")])
        .arg(&fixture.context));
    read_listing(&on.engine, &tag).await
}

/// Builds through layerbench's context and engine and returns the image's
/// listing of `/ctx` and the Dockerfile's name in the context.
async fn listing_by_layerbench(engine: &Engine, fixture: &Fixture, builder: Builder, transfer: ContextTransfer, tags: &mut Tags<'_>) -> (String, String) {
    let context = ContextSource::new(&fixture.context, &fixture.dockerfile, builder, IgnoreDialect::of_engine(&engine.version), transfer)
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    let tag = tags.next();
    let what = format!("{} ({builder:?}, {transfer})", fixture.name);
    let dockerfile = context.dockerfile().to_string();
    let request = BuildRequest {
        what: what.clone(),
        context,
        tag: tag.clone(),
        target: None,
        build_args: BTreeMap::from([("NONCE".to_string(), tag.clone())]),
        labels: BTreeMap::from([("layerbench.test".to_string(), "context-parity".to_string())]),
        network_mode: "none".to_string(),
        no_cache: true,
    };
    engine
        .build(request, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .into_image(&what)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (read_listing(engine, &tag).await, dockerfile)
}

async fn read_listing(engine: &Engine, tag: &str) -> String {
    let bytes = engine
        .read_file_from_image(tag, LISTING)
        .await
        .unwrap_or_else(|e| panic!("{tag}: {e}"))
        .unwrap_or_else(|| panic!("{tag} has no {LISTING}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Lines in one listing and not the other, for a readable failure.
fn difference(cli: &str, ours: &str) -> String {
    let cli_lines: Vec<&str> = cli.lines().collect();
    let our_lines: Vec<&str> = ours.lines().collect();
    let mut out = String::new();
    for l in cli_lines.iter().filter(|l| !our_lines.contains(l)) {
        out.push_str(&format!("  only the CLI:        {l}\n"));
    }
    for l in our_lines.iter().filter(|l| !cli_lines.contains(l)) {
        out.push_str(&format!("  only layerbench:     {l}\n"));
    }
    out
}

fn assert_same(on: &EngineUnderTest, fixture: &Fixture, builder: Builder, transfer: ContextTransfer, cli: &str, ours: &str) {
    assert!(
        cli == ours,
        "{} ({builder:?}, {transfer}) on {}: COPY sees a different context\n{}",
        fixture.name,
        on.label(),
        difference(cli, ours)
    );
}

#[tokio::test]
async fn copy_sees_the_same_context_as_with_the_docker_cli_for_both_builders() {
    let _guard = common::engine_lock();
    let root = tempfile::tempdir().unwrap();
    let fixtures = [tree(root.path()), own_ignore_file(root.path())];
    for on in &common::engines_under_test().await {
        let mut tags = Tags::new("same", on);
        for fixture in &fixtures {
            for (builder, transfer) in [(Builder::Buildkit, ContextTransfer::Session), (Builder::Buildkit, ContextTransfer::Tar), (Builder::Legacy, ContextTransfer::Tar)] {
                // The containerd image store cannot read a tar sent to BuildKit (see the owned_engine tests).
                if transfer == ContextTransfer::Tar && builder == Builder::Buildkit && on.image_store().await == "containerd" {
                    continue;
                }
                let cli = listing_by_cli(on, fixture, builder, &mut tags).await;
                let (ours, _) = listing_by_layerbench(&on.engine, fixture, builder, transfer, &mut tags).await;
                assert!(cli.lines().count() > 1, "{} on {}: the listing is empty:\n{cli}", fixture.name, on.label());
                assert_same(on, fixture, builder, transfer, &cli, &ours);
            }
        }
    }
}

#[tokio::test]
async fn a_dockerfile_the_cli_hides_is_hidden_from_the_legacy_builder_and_the_session_and_one_extra_file_in_buildkit_s_tar() {
    let _guard = common::engine_lock();
    let root = tempfile::tempdir().unwrap();
    let fixtures = [
        dockerfile_in_an_ignored_folder(root.path()),
        everything_ignored(root.path()),
        dockerfile_outside_with_ignore(root.path()),
        dockerfile_outside_bare(root.path()),
    ];
    for on in &common::engines_under_test().await {
        let mut tags = Tags::new("hidden", on);
        for fixture in &fixtures {
            let cli = listing_by_cli(on, fixture, Builder::Legacy, &mut tags).await;
            let (ours, _) = listing_by_layerbench(&on.engine, fixture, Builder::Legacy, ContextTransfer::Tar, &mut tags).await;
            assert_same(on, fixture, Builder::Legacy, ContextTransfer::Tar, &cli, &ours);

            // Through the session the Dockerfile travels apart from the context, as the CLI sends it.
            let cli = listing_by_cli(on, fixture, Builder::Buildkit, &mut tags).await;
            let (ours, dockerfile) = listing_by_layerbench(&on.engine, fixture, Builder::Buildkit, ContextTransfer::Session, &mut tags).await;
            assert!(!dockerfile.starts_with(".dockerfile."), "{}: {dockerfile}", fixture.name);
            assert_same(on, fixture, Builder::Buildkit, ContextTransfer::Session, &cli, &ours);

            // BuildKit reads the Dockerfile from a tar context, so it stays visible
            // under its generated name; everything else is as with the CLI.
            if on.image_store().await == "containerd" {
                continue;
            }
            let (ours, dockerfile) = listing_by_layerbench(&on.engine, fixture, Builder::Buildkit, ContextTransfer::Tar, &mut tags).await;
            assert!(dockerfile.starts_with(".dockerfile."), "{}: {dockerfile}", fixture.name);
            let extra = format!("{dockerfile}|f|600|0:0||");
            let (extra_lines, rest): (Vec<&str>, Vec<&str>) = ours.lines().partition(|l| l.starts_with(&extra));
            assert_eq!(extra_lines.len(), 1, "{} on {}: the Dockerfile as one extra file:\n{ours}", fixture.name, on.label());
            let rest: String = rest.iter().map(|l| format!("{l}\n")).collect();
            assert_same(on, fixture, Builder::Buildkit, ContextTransfer::Tar, &cli, &rest);
        }
    }
}

/// The Dockerfile of `excluded_dockerfile_app`: a step per side (the build argument `SIDE`) keeps the CLI's cache
/// keys and layerbench's apart from `COPY` on.
const EXCLUDED_DOCKERFILE: &str = "FROM debian:bookworm-slim\nARG SIDE\nRUN echo \"$SIDE\" > /side\nCOPY . /ctx\nRUN ls -la /ctx > /listing\n";

/// The CLI's build of `dir` as side `side`: its output.
fn cli_build(on: &EngineUnderTest, builder: Builder, dir: &std::path::Path, side: &str, tag: &str) -> String {
    common::cli_build(on, builder, dir, ["--network", "none", "--label", "layerbench.test=context-parity", "--build-arg", &format!("SIDE={side}"), "-t", tag])
}

/// layerbench's build of `dir` as side `side`: whether its `COPY . /ctx` was cached.
async fn layerbench_copy_cached(engine: &Engine, builder: Builder, dir: &std::path::Path, side: &str, tag: &str) -> bool {
    let context = ContextSource::new(dir, std::path::Path::new("Dockerfile"), builder, IgnoreDialect::of_engine(&engine.version), ContextTransfer::Session).unwrap();
    let request = BuildRequest {
        what: format!("excluded Dockerfile ({builder:?})"),
        context,
        tag: tag.to_string(),
        target: None,
        build_args: BTreeMap::from([("SIDE".to_string(), side.to_string())]),
        labels: BTreeMap::from([("layerbench.test".to_string(), "context-parity".to_string())]),
        network_mode: "none".to_string(),
        no_cache: false,
    };
    let outcome = engine.build(request, &mut |_| {}).await.unwrap();
    let steps = outcome.steps.clone();
    outcome.into_image("excluded Dockerfile").unwrap();
    steps.iter().find(|s| s.name.contains("COPY . /ctx")).unwrap_or_else(|| panic!("no COPY step in {steps:?}")).cached
}

/// The held-out cache case that used to differ: after an edit of a Dockerfile that `.dockerignore` excludes, the
/// CLI keeps `COPY . /ctx` cached with both builders (the edited file is not in the context), and so does layerbench,
/// through the session for BuildKit.
#[tokio::test]
async fn an_edit_of_a_dockerfile_the_ignore_rules_exclude_keeps_copy_cached_as_with_the_cli() {
    let _guard = common::engine_lock();
    for on in &common::engines_under_test().await {
        let mut tags = Tags::new("excluded", on);
        for builder in [Builder::Buildkit, Builder::Legacy] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("Dockerfile"), EXCLUDED_DOCKERFILE).unwrap();
            std::fs::write(dir.path().join(".dockerignore"), "Dockerfile\n").unwrap();
            std::fs::write(dir.path().join("main.go"), "package main\n").unwrap();
            let nonce = format!("{}-{}", std::process::id(), layerbench::paths::new_run_id());
            let (cli_side, our_side) = (format!("cli-{nonce}"), format!("layerbench-{nonce}"));
            cli_build(on, builder, dir.path(), &cli_side, &tags.next());
            layerbench_copy_cached(&on.engine, builder, dir.path(), &our_side, &tags.next()).await;
            std::fs::write(dir.path().join("Dockerfile"), format!("{EXCLUDED_DOCKERFILE}RUN true\n")).unwrap();
            let cli = cli_build(on, builder, dir.path(), &cli_side, &tags.next());
            let ours = layerbench_copy_cached(&on.engine, builder, dir.path(), &our_side, &tags.next()).await;
            assert!(common::cli_cached(builder, &cli, "COPY . /ctx"), "{builder:?} on {}: the CLI ran COPY after the edit:\n{cli}", on.label());
            assert!(ours, "{builder:?} on {}: layerbench's COPY ran after an edit of the excluded Dockerfile", on.label());
        }
    }
}
