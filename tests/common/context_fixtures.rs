//! The context fixtures: folders with every kind of `.dockerignore` rule and file, and the Dockerfiles beside or outside them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Lists `/ctx` as `COPY . /ctx` made it into `/listing`.
pub const DOCKERFILE: &str = r#"FROM debian:bookworm-slim
ARG NONCE
RUN echo "$NONCE" > /nonce
COPY . /ctx
RUN find /ctx \( -type d -printf '%P|%y|%m|%U:%G|||%n|\n' \) -o -printf '%P|%y|%m|%U:%G|%l|%s|%n|%T@\n' | LC_ALL=C sort > /listing
"#;

/// A context folder and the Dockerfile to build it with.
pub struct Fixture {
    pub name: &'static str,
    pub context: PathBuf,
    pub dockerfile: PathBuf,
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sets a modification time with nanoseconds, on a symlink itself too.
pub fn touch(path: &Path, when: &str) {
    run(Command::new("touch").arg("-h").arg("-d").arg(when).arg(path));
}

/// `.dockerignore` patterns of every kind, and files of every kind.
pub fn tree(root: &Path) -> Fixture {
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
pub fn own_ignore_file(root: &Path) -> Fixture {
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
pub fn dockerfile_in_an_ignored_folder(root: &Path) -> Fixture {
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
pub fn everything_ignored(root: &Path) -> Fixture {
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
pub fn dockerfile_outside_with_ignore(root: &Path) -> Fixture {
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
pub fn dockerfile_outside_bare(root: &Path) -> Fixture {
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

/// Every fixture, made under `root`.
pub fn all(root: &Path) -> Vec<Fixture> {
    vec![
        tree(root),
        own_ignore_file(root),
        dockerfile_in_an_ignored_folder(root),
        everything_ignored(root),
        dockerfile_outside_with_ignore(root),
        dockerfile_outside_bare(root),
    ]
}
