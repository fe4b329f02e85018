//! A large build context's upload: layerbench's streamed context against `/usr/bin/docker build` on the same 1 GB folder, side by side in one run, and layerbench's peak memory while it sends it.
//!
//! Needs a running engine with `debian:bookworm-slim` (`layerbench setup`).
//! The bench writes a context of about 1 GB in 20,000 files (sources, assets
//! and a few large blobs, incompressible bytes) under `/var/tmp`, removed at
//! the end, with this Dockerfile:
//!
//! ```text
//! FROM debian:bookworm-slim
//! RUN true
//! ```
//!
//! Both sides use the **legacy builder** (`DOCKER_BUILDKIT=0` for the CLI):
//! its CLI sends the whole folder as one tar, and the engine unpacks all of
//! it before the first step, whatever the Dockerfile uses. The BuildKit CLI
//! would not be a fair match: it syncs through a session only what the
//! `COPY`s name (here nothing), while a context sent as a tar is always sent
//! whole. `RUN true` is cached after a first, unmeasured build of each side,
//! so a measured build is the upload, the engine unpacking it, and a cache
//! check: the same work for both but who sends the tar.
//!
//! Each side runs as its own process (layerbench's through this bench
//! re-executed in `--upload-only` mode: connect, stream the context, build),
//! timed from spawn to exit, interleaved (a, b, b, a, ...) for a few rounds;
//! the child reports its peak resident memory (`VmHWM`). Printed: both
//! medians, their ratio (target <= 1) and the peak memory (target < 100 MB).
//! Every image it makes is tagged `layerbench-bench/context-upload:*`,
//! labelled, and removed at the end.
//!
//! **BuildKit** then compares layerbench's session (FileSync's DiffCopy,
//! `--session-only` mode) with the CLI's (`DOCKER_BUILDKIT=1`) on the same
//! folder, with a Dockerfile that reads all of it without copying it:
//!
//! ```text
//! FROM debian:bookworm-slim
//! RUN --mount=type=bind,target=/ctx true
//! ```
//!
//! on an engine the bench owns (`lbb-upload-<pid>`, the host's release,
//! started and stopped by the bench), because a first build needs an engine
//! that holds no earlier sync of the folder: the bench empties it (build
//! cache included) before each measured first build. A rebuild follows each
//! side's own previous build after one file of the context changed: only that
//! file should travel (the child prints the bytes its session sent). Set
//! `LAYERBENCH_BENCH_SIDES=buildkit` (or `legacy`) to run one half.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use layerbench::context::{ContextTransfer, IgnoreDialect};
use layerbench::engine::{BuildRequest, Builder, ContextSource, Engine};

const DOCKER: &str = "/usr/bin/docker";
const DOCKERFILE: &str = "FROM debian:bookworm-slim\nRUN true\n";
const TAG_CLI: &str = "layerbench-bench/context-upload:cli";
const TAG_OURS: &str = "layerbench-bench/context-upload:layerbench";
const ROUNDS: usize = 5;
const DOCKERFILE_BUILDKIT: &str = "FROM debian:bookworm-slim\nRUN --mount=type=bind,target=/ctx true\n";
const TAG_CLI_BK: &str = "layerbench-bench/context-upload:cli-buildkit";
const TAG_OURS_BK: &str = "layerbench-bench/context-upload:layerbench-buildkit";
const FILES: u32 = 20_000;

/// Fills `buf` with incompressible bytes from `state` (xorshift64).
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// A uniform draw in `lo..hi` from `state`.
fn between(state: &mut u64, lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b, state);
    lo + u64::from_le_bytes(b) % (hi - lo)
}

/// Writes the context: 19,000 small sources (1–24 KiB) in 100 modules of 10
/// packages, 950 assets (100 KiB–1 MiB) and 50 blobs (2–8 MiB): about 1 GB.
fn make_context(dir: &Path) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0;
    let mut write = |path: PathBuf, size: u64, state: &mut u64| {
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("the context folder is writable");
        let data = &mut buf[..size as usize];
        fill(data, state);
        std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("the context file is written");
        total += size;
    };
    for n in 0..FILES {
        let (path, size) = match n {
            0..19_000 => (dir.join(format!("src/module{:02}/pkg{}/file{n}.go", n % 100, n / 100 % 10)), between(&mut state, 1 << 10, 24 << 10)),
            19_000..19_950 => (dir.join(format!("assets/{}/asset{n}.bin", ["img", "fonts", "media"][n as usize % 3])), between(&mut state, 100 << 10, 1 << 20)),
            _ => (dir.join(format!("data/blob{n}.bin")), between(&mut state, 2 << 20, 8 << 20)),
        };
        write(path, size, &mut state);
    }
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).expect("the Dockerfile is written");
    total
}

/// Removes the context folder and the bench's images when the bench ends, finished or not.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER).args(["rmi", "--force", TAG_OURS, TAG_CLI]).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The child's side: one build of `dir` with `dockerfile` on `engine` (`default`, or an owned engine's name), its
/// context sent by `transfer`; prints `bytes=N vmhwm_kb=K`.
fn build_in_child(engine: &str, dir: &Path, dockerfile: &str, builder: Builder, transfer: ContextTransfer, tag: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let sent = runtime.block_on(async {
        let engine = Engine::connect_spec(engine).await.expect("the bench's engine answers");
        let context = ContextSource::new(dir, Path::new(dockerfile), builder, IgnoreDialect::of_engine(&engine.version), transfer).expect("the context starts");
        let what = format!("context upload bench ({}, {transfer})", builder.name());
        let request = BuildRequest {
            what: what.clone(),
            context,
            tag: tag.into(),
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::from([("io.layerbench.bench".to_string(), "context-upload".to_string())]),
            network_mode: "host".into(),
            no_cache: false,
        };
        let outcome = engine.build(request, &mut |_| {}).await.expect("the build runs");
        let bytes = outcome.context.as_ref().map_or(0, |c| c.bytes);
        outcome.into_image(&what).expect("the build succeeds");
        bytes
    });
    print_sent(sent);
}

fn print_sent(sent: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).map_or("0".to_string(), |v| v.trim().trim_end_matches(" kB").to_string());
    println!("bytes={sent} vmhwm_kb={hwm}");
}

/// One build by layerbench in a child process: its wall time, the bytes it sent and its peak memory in KiB.
fn ours(dir: &Path) -> (Duration, u64, u64) {
    child(&["--upload-only".into(), dir.display().to_string()])
}

/// The bench re-executed with `args`: its wall time, the bytes it sent and its peak memory in KiB.
fn child(args: &[String]) -> (Duration, u64, u64) {
    let exe = std::env::current_exe().expect("the bench's own path");
    let started = Instant::now();
    let out = Command::new(exe).args(args).output().expect("the bench re-executes itself");
    let wall = started.elapsed();
    assert!(out.status.success(), "layerbench's upload failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in the child's output: {text}"))
    };
    (wall, field("bytes="), field("vmhwm_kb="))
}

/// One build by the Docker CLI's legacy builder: its wall time.
fn cli(dir: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(DOCKER)
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--force-rm", "--network", "host", "--label", "io.layerbench.managed=true", "--label", "io.layerbench.bench=context-upload", "-t", TAG_CLI])
        .arg(dir)
        .output()
        .expect("/usr/bin/docker runs");
    let wall = started.elapsed();
    assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
    wall
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--upload-only") {
        build_in_child("default", Path::new(&args[n + 1]), "Dockerfile", Builder::Legacy, ContextTransfer::Tar, TAG_OURS);
        return;
    }
    if let Some(n) = args.iter().position(|a| a == "--session-only") {
        build_in_child(&args[n + 1], Path::new(&args[n + 2]), "Dockerfile.buildkit", Builder::Buildkit, ContextTransfer::Session, TAG_OURS_BK);
        return;
    }
    let sides = std::env::var("LAYERBENCH_BENCH_SIDES").unwrap_or_default();
    let dir = PathBuf::from(format!("/var/tmp/layerbench-context-upload-{}", std::process::id()));
    let cleanup = Cleanup(dir.clone());
    let made = Instant::now();
    let total = make_context(&dir);
    std::fs::write(dir.join("Dockerfile.buildkit"), DOCKERFILE_BUILDKIT).expect("the Dockerfile is written");
    println!("context: {} files, {:.2} GB in {} ({:.1} s to write)", FILES + 2, total as f64 / 1e9, dir.display(), made.elapsed().as_secs_f64());
    if sides != "buildkit" {
        legacy(&dir);
    }
    if sides != "legacy" {
        buildkit(&dir);
    }
    drop(cleanup);
}

/// The legacy builder's half: the tar upload on the host's engine.
fn legacy(dir: &Path) {
    // Unmeasured: `RUN true` cached for both, the files in the page cache.
    let (_, bytes, _) = ours(dir);
    cli(dir);
    let (mut mine, mut theirs, mut peak) = (Vec::new(), Vec::new(), 0);
    for round in 0..ROUNDS {
        let mut run_ours = || {
            let (wall, _, hwm) = ours(dir);
            peak = peak.max(hwm);
            mine.push(wall);
        };
        if round % 2 == 0 {
            run_ours();
            theirs.push(cli(dir));
        } else {
            theirs.push(cli(dir));
            run_ours();
        }
        println!("round {}: layerbench {:.2} s, docker CLI {:.2} s", round + 1, mine[round].as_secs_f64(), theirs[round].as_secs_f64());
    }
    let (a, b) = (median(mine), median(theirs));
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    println!(
        "context upload, legacy builder, {ROUNDS} interleaved rounds ({:.2} GB tar): layerbench median {:.2} s, docker CLI median {:.2} s, ratio {ratio:.2} ({})",
        bytes as f64 / 1e9,
        a.as_secs_f64(),
        b.as_secs_f64(),
        if ratio <= 1.0 { "target met: no slower" } else { "target missed: slower than the CLI" }
    );
    print_peak("uploading", peak);
}

fn print_peak(what: &str, peak: u64) {
    println!(
        "layerbench peak memory while {what}: {:.1} MB (VmHWM of the uploading process; target < 100 MB: {})",
        peak as f64 / 1024.0,
        if peak < 100 * 1024 { "met" } else { "missed" }
    );
}

/// Stops the bench's own engine when the bench ends, finished or not.
struct OwnedEngine(String);

impl Drop for OwnedEngine {
    fn drop(&mut self) {
        if let Err(e) = layerbench::engine::owned::stop(&layerbench::paths::engines_dir(), &self.0, false) {
            eprintln!("stopping the bench's engine {}: {e}", self.0);
        }
    }
}

/// BuildKit's half: layerbench's session against the CLI's, first builds on an emptied engine and rebuilds after one file changed.
fn buildkit(dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let name = format!("lbb-upload-{}", std::process::id());
    let engines = layerbench::paths::engines_dir();
    runtime
        .block_on(layerbench::engine::owned::start_dockerd(&engines, &name, &Default::default(), &layerbench::paths::cache_dir(), &layerbench::paths::debian_mirror()))
        .expect("the bench's engine starts (run `layerbench setup` first)");
    let _stop = OwnedEngine(name.clone());
    let engine = runtime.block_on(Engine::connect_spec(&name)).expect("the bench's engine answers");
    // Its base images, which emptying it keeps.
    let cache = layerbench::paths::cache_dir();
    let store = layerbench::setup::StoreSpec::default_store(&layerbench::paths::store_dir());
    let provisioned = runtime
        .block_on(layerbench::setup::provision_on(&engine, false, &cache, &store, &layerbench::paths::debian_mirror()))
        .expect("the bench's engine gets its base images");
    layerbench::engine::owned::record_base_images(&engines, &name, provisioned.base_images.iter().map(|i| i.id.clone()).collect()).expect("its base images are recorded");
    let empty = || runtime.block_on(engine.empty()).expect("the bench's engine is emptied");
    let ours = || child(&["--session-only".into(), name.clone(), dir.display().to_string()]);
    let cli = || {
        let started = Instant::now();
        let out = layerbench::engine::owned::cli_command(&engines, &name, &[])
            .expect("the engine's CLI")
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "--network", "host", "--label", "io.layerbench.managed=true", "--label", "io.layerbench.bench=context-upload", "-f"])
            .arg(dir.join("Dockerfile.buildkit"))
            .args(["-t", TAG_CLI_BK])
            .arg(dir)
            .output()
            .expect("the engine's docker CLI runs");
        assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
        started.elapsed()
    };
    // First builds: each on an engine that holds no sync of the folder.
    let (mut mine, mut theirs, mut peak, mut first_bytes) = (Vec::new(), Vec::new(), 0, 0);
    for round in 0..ROUNDS {
        let mut run_ours = || {
            empty();
            let (wall, bytes, hwm) = ours();
            peak = peak.max(hwm);
            first_bytes = bytes;
            mine.push(wall);
        };
        let mut run_cli = || {
            empty();
            theirs.push(cli());
        };
        if round % 2 == 0 {
            run_ours();
            run_cli();
        } else {
            run_cli();
            run_ours();
        }
        println!("first build, round {}: layerbench {:.2} s, docker CLI {:.2} s", round + 1, mine[round].as_secs_f64(), theirs[round].as_secs_f64());
    }
    let first = (median(mine), median(theirs));
    // Rebuilds: one file changes, then each side builds after its own last build.
    empty();
    ours();
    cli();
    let changed = dir.join("src/module00/pkg0/file0.go");
    let (mut mine, mut theirs, mut rebuild_bytes) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut file = std::fs::OpenOptions::new().append(true).open(&changed).expect("the changed file");
        writeln!(file, "// round {round}").expect("the change is written");
        drop(file);
        let mut run_ours = || {
            let (wall, bytes, hwm) = ours();
            peak = peak.max(hwm);
            rebuild_bytes.push(bytes);
            mine.push(wall);
        };
        if round % 2 == 0 {
            run_ours();
            theirs.push(cli());
        } else {
            theirs.push(cli());
            run_ours();
        }
        println!("rebuild, round {}: layerbench {:.2} s ({} bytes sent), docker CLI {:.2} s", round + 1, mine[round].as_secs_f64(), rebuild_bytes[round], theirs[round].as_secs_f64());
    }
    let rebuild = (median(mine), median(theirs));
    let size = std::fs::metadata(&changed).map(|m| m.len()).unwrap_or(0);
    for (what, (a, b), sent) in [("first build", first, format!("{:.2} GB sent", first_bytes as f64 / 1e9)), ("rebuild after one file changed", rebuild, format!("at most {} bytes sent; the changed file has {size}", rebuild_bytes.iter().max().unwrap_or(&0)))] {
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        println!(
            "context through the session, BuildKit, {what}, {ROUNDS} interleaved rounds ({sent}): layerbench median {:.2} s, docker CLI median {:.2} s, ratio {ratio:.2} ({})",
            a.as_secs_f64(),
            b.as_secs_f64(),
            if ratio <= 1.0 { "target met: no slower" } else { "target missed: slower than the CLI" }
        );
    }
    print_peak("serving the session", peak);
}
