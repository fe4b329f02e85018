//! The context layerbench sends makes `COPY . /ctx` see what `/usr/bin/docker build` makes it see, with both builders.
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

#![allow(clippy::await_holding_lock)] // the guard serialises tests that share one engine

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerbench::context::stream_context;
use layerbench::engine::{BuildRequest, Builder, Engine};

const DOCKER: &str = "/usr/bin/docker";
const TAG_PREFIX: &str = "layerbench-test/context-parity";
const LISTING: &str = "/listing";
const DOCKERFILE: &str = r#"FROM debian:bookworm-slim
ARG NONCE
RUN echo "$NONCE" > /nonce
COPY . /ctx
RUN find /ctx \( -type d -printf '%P|%y|%m|%U:%G|||%n|\n' \) -o -printf '%P|%y|%m|%U:%G|%l|%s|%n|%T@\n' | LC_ALL=C sort > /listing
"#;

/// A context folder and the Dockerfile to build it with.
struct Fixture {
    name: &'static str,
    context: PathBuf,
    dockerfile: PathBuf,
}

/// The image tags one test made; removed when it ends, passed or failed.
struct Tags {
    test: &'static str,
    made: Vec<String>,
}

impl Tags {
    fn new(test: &'static str) -> Tags {
        Tags { test, made: Vec::new() }
    }

    fn next(&mut self) -> String {
        let tag = format!("{TAG_PREFIX}:{}-{}-{}", self.test, std::process::id(), self.made.len());
        self.made.push(tag.clone());
        tag
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        if !self.made.is_empty() {
            let _ = Command::new(DOCKER).arg("rmi").arg("--force").args(&self.made).output();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sets a modification time with nanoseconds, on a symlink itself too.
fn touch(path: &Path, when: &str) {
    run(Command::new("touch").arg("-h").arg("-d").arg(when).arg(path));
}

/// `.dockerignore` patterns of every kind, and files of every kind.
fn tree(root: &Path) -> Fixture {
    let d = root.join("tree");
    write(&d.join("Dockerfile"), DOCKERFILE);
    // Re-includes inside excluded folders, `**`, comments, cleaning, white space, regular-expression characters.
    for f in [
        "a/keep/k", "a/drop/d", "a/f", "b/x/y/z", "b/x/f", "q/r/x/keep", "q/r/x/f", "q/r/x/y/z", "c/keep", "c/other",
        "d/e/keep", "d/e/o", "top.md", "docs/guide.md", "sub.tmp", "n/m/deep.tmp", "sp ace.txt", "trail.txt", "crlf.txt",
        "f(1).txt", "f1.txt", "aab", "log7", "logx", "#hash", "e/keep/k", "e/other", "gh", "gxh", "g/i/h", "x5", "xa",
        "*star", "bom",
    ] {
        write(&d.join(f), f);
    }
    std::fs::create_dir_all(d.join("secret")).unwrap();
    write(&d.join("secret/keep"), "k");
    write(&d.join("secret/s"), "s");
    chmod(&d.join("secret"), 0o700);
    write(
        &d.join(".dockerignore"),
        "\u{feff}bom\na\n!a/keep\n**/x\n!b/x/y\n!q/r/x/keep\n# c/keep\n #hash\nc/*\n!   c/keep\n*.md   \n\
         **/*.tmp\n/sub.tmp\n../d/e/o\nd/../trail.txt\ncrlf.txt\r\nf(1).txt\na+b\nlog[0-9]\ne\n!**/keep\nsecret\n!secret/keep\n\
         g**h\nx[[:digit:]]\n\\*star\n",
    );
    // Symlinks (never followed), empty folders, modes, owners, hard links, a fifo, a device, a socket, long and non-ASCII names.
    write(&d.join("files/plain"), "plain\n");
    std::os::unix::fs::symlink("plain", d.join("files/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("files/abs-link")).unwrap();
    std::os::unix::fs::symlink("../../outside", d.join("files/up-link")).unwrap();
    std::os::unix::fs::symlink("nowhere", d.join("files/dangling")).unwrap();
    std::os::unix::fs::symlink("../files", d.join("files/dir-link")).unwrap();
    std::fs::create_dir_all(d.join("files/empty/inner")).unwrap();
    for (name, mode) in [("m600", 0o600), ("m755", 0o755), ("m000", 0o000), ("suid", 0o4755)] {
        write(&d.join("files").join(name), name);
        chmod(&d.join("files").join(name), mode);
    }
    for (name, mode) in [("d700", 0o700), ("sticky", 0o1777), ("setgid", 0o2755)] {
        std::fs::create_dir_all(d.join("files").join(name)).unwrap();
        chmod(&d.join("files").join(name), mode);
    }
    write(&d.join("files/owned"), "owned");
    std::os::unix::fs::lchown(d.join("files/owned"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(d.join("files/rel-link"), Some(1234), Some(5678)).unwrap();
    write(&d.join("files/hard1"), "hard");
    std::fs::hard_link(d.join("files/hard1"), d.join("files/empty/hard2")).unwrap();
    run(Command::new("mkfifo").arg(d.join("files/fifo")));
    run(Command::new("mknod").arg(d.join("files/chardev")).args(["c", "1", "3"]));
    drop(std::os::unix::net::UnixListener::bind(d.join("files/socket")).unwrap());
    write(&d.join("files").join("l".repeat(70)).join("m".repeat(70)).join("n".repeat(40)), "long");
    write(&d.join("files/ünï cödé"), "unicode");
    touch(&d.join("files/plain"), "2020-01-02 03:04:05.123456789");
    touch(&d.join("files/rel-link"), "2019-01-01 00:00:00.5");
    touch(&d.join("files/m600"), "2021-06-07 08:09:10");
    // The context folder's own mode never reaches `/ctx`.
    chmod(&d, 0o750);
    Fixture {
        name: "tree",
        dockerfile: d.join("Dockerfile"),
        context: d,
    }
}

/// The Dockerfile has its own ignore file beside it, which only BuildKit reads.
fn own_ignore_file(root: &Path) -> Fixture {
    let d = root.join("own-ignore");
    write(&d.join("build/app.Dockerfile"), DOCKERFILE);
    write(&d.join("build/app.Dockerfile.dockerignore"), "b.txt\n");
    write(&d.join(".dockerignore"), "a.txt\n");
    write(&d.join("a.txt"), "a");
    write(&d.join("b.txt"), "b");
    Fixture {
        name: "own-ignore",
        dockerfile: d.join("build/app.Dockerfile"),
        context: d,
    }
}

/// `.dockerignore` excludes itself and the folder that holds the Dockerfile.
fn dockerfile_in_an_ignored_folder(root: &Path) -> Fixture {
    let d = root.join("ignored-folder");
    write(&d.join("build/app.Dockerfile"), DOCKERFILE);
    write(&d.join("build/other"), "o");
    write(&d.join(".dockerignore"), "build\n.dockerignore\n");
    write(&d.join("keep.txt"), "k");
    Fixture {
        name: "ignored-folder",
        dockerfile: d.join("build/app.Dockerfile"),
        context: d,
    }
}

/// `.dockerignore` excludes everything, the Dockerfile and itself included, but one file.
fn everything_ignored(root: &Path) -> Fixture {
    let d = root.join("everything-ignored");
    write(&d.join("Dockerfile"), DOCKERFILE);
    write(&d.join(".dockerignore"), "*\n!keep.txt\n");
    write(&d.join("keep.txt"), "k");
    write(&d.join("drop.txt"), "d");
    Fixture {
        name: "everything-ignored",
        dockerfile: d.join("Dockerfile"),
        context: d,
    }
}

/// The Dockerfile lies outside the context, which has a `.dockerignore` that does not list itself.
fn dockerfile_outside_with_ignore(root: &Path) -> Fixture {
    let d = root.join("outside-context");
    write(&d.join("a.txt"), "a");
    write(&d.join("x"), "x");
    write(&d.join(".dockerignore"), "x");
    let dockerfile = root.join("outside-dockerfiles/Dockerfile");
    write(&dockerfile, DOCKERFILE);
    write(&root.join("outside-dockerfiles/Dockerfile.dockerignore"), "a.txt\n");
    Fixture {
        name: "outside-with-ignore",
        dockerfile,
        context: d,
    }
}

/// The Dockerfile lies outside a context that has no `.dockerignore`.
fn dockerfile_outside_bare(root: &Path) -> Fixture {
    let d = root.join("outside-bare");
    write(&d.join("a.txt"), "a");
    let dockerfile = root.join("outside-bare-dockerfiles/ci.Dockerfile");
    write(&dockerfile, DOCKERFILE);
    Fixture {
        name: "outside-bare",
        dockerfile,
        context: d,
    }
}

fn cli_flag(builder: Builder) -> &'static str {
    match builder {
        Builder::Buildkit => "1",
        Builder::Legacy => "0",
    }
}

/// Builds with the Docker CLI and returns the image's listing of `/ctx`.
async fn listing_by_cli(engine: &Engine, fixture: &Fixture, builder: Builder, tags: &mut Tags) -> String {
    let tag = tags.next();
    run(Command::new(DOCKER)
        .env("DOCKER_BUILDKIT", cli_flag(builder))
        .args(["build", "--quiet", "--no-cache", "--label", "layerbench.test=context-parity", "--file"])
        .arg(&fixture.dockerfile)
        .args(["--tag", &tag, "--build-arg", &format!("NONCE={tag}")])
        .arg(&fixture.context));
    read_listing(engine, &tag).await
}

/// Builds through layerbench's context and engine and returns the image's
/// listing of `/ctx` and the Dockerfile's name in the context.
async fn listing_by_layerbench(engine: &Engine, fixture: &Fixture, builder: Builder, tags: &mut Tags) -> (String, String) {
    let context = stream_context(&fixture.context, &fixture.dockerfile, builder)
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    let tag = tags.next();
    let what = format!("{} ({builder:?})", fixture.name);
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

fn assert_same(fixture: &Fixture, builder: Builder, cli: &str, ours: &str) {
    assert!(
        cli == ours,
        "{} ({builder:?}): COPY sees a different context\n{}",
        fixture.name,
        difference(cli, ours)
    );
}

#[tokio::test]
async fn copy_sees_the_same_context_as_with_the_docker_cli_for_both_builders() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    let root = tempfile::tempdir().unwrap();
    let fixtures = [tree(root.path()), own_ignore_file(root.path())];
    let mut tags = Tags::new("same");
    for fixture in &fixtures {
        for builder in [Builder::Buildkit, Builder::Legacy] {
            let cli = listing_by_cli(&engine, fixture, builder, &mut tags).await;
            let (ours, _) = listing_by_layerbench(&engine, fixture, builder, &mut tags).await;
            assert!(cli.lines().count() > 1, "{}: the listing is empty:\n{cli}", fixture.name);
            assert_same(fixture, builder, &cli, &ours);
        }
    }
}

#[tokio::test]
async fn a_dockerfile_the_cli_hides_is_hidden_from_the_legacy_builder_and_one_extra_file_for_buildkit() {
    let _guard = common::engine_lock();
    let (engine, _) = common::provisioned().await;
    let root = tempfile::tempdir().unwrap();
    let fixtures = [
        dockerfile_in_an_ignored_folder(root.path()),
        everything_ignored(root.path()),
        dockerfile_outside_with_ignore(root.path()),
        dockerfile_outside_bare(root.path()),
    ];
    let mut tags = Tags::new("hidden");
    for fixture in &fixtures {
        let cli = listing_by_cli(&engine, fixture, Builder::Legacy, &mut tags).await;
        let (ours, _) = listing_by_layerbench(&engine, fixture, Builder::Legacy, &mut tags).await;
        assert_same(fixture, Builder::Legacy, &cli, &ours);

        // BuildKit reads the Dockerfile from a tar context, so it stays visible
        // under its generated name; everything else is as with the CLI.
        let cli = listing_by_cli(&engine, fixture, Builder::Buildkit, &mut tags).await;
        let (ours, dockerfile) = listing_by_layerbench(&engine, fixture, Builder::Buildkit, &mut tags).await;
        assert!(dockerfile.starts_with(".dockerfile."), "{}: {dockerfile}", fixture.name);
        let extra = format!("{dockerfile}|f|600|0:0||");
        let (extra_lines, rest): (Vec<&str>, Vec<&str>) = ours.lines().partition(|l| l.starts_with(&extra));
        assert_eq!(extra_lines.len(), 1, "{}: the Dockerfile as one extra file:\n{ours}", fixture.name);
        let rest: String = rest.iter().map(|l| format!("{l}\n")).collect();
        assert_same(fixture, Builder::Buildkit, &cli, &rest);
    }
}
