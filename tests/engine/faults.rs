//! Faults met during a run, injected for real: a build that hangs is cancelled in the engine and
//! recorded, and the run goes on.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use layerbench::results::Results;

use crate::common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A sleep no other process (nor an earlier run of these tests) sleeps for: a hung step the test can find and end.
fn unique_sleep(tag: u64) -> String {
    (1_000_000 + u64::from(std::process::id()) * 10 + tag).to_string()
}

/// Ends this test's `sleep <seconds>` processes that outlived their engine (stopping dockerd leaves BuildKit's running steps behind).
fn end_sleeping(seconds: &str) {
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).eq([b"sleep".as_slice(), seconds.as_bytes()]) {
            let _ = Command::new("kill").arg(entry.file_name()).status();
        }
    }
}

/// Processes whose command line is exactly `sleep <seconds>` (the hung step's), wherever they run (BuildKit's containers are not Docker containers).
fn sleeping(seconds: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.split(|b| *b == 0).filter(|a| !a.is_empty()).eq([b"sleep".as_slice(), seconds.as_bytes()]))
        .count()
}

#[test]
fn a_hung_build_is_cancelled_in_the_engine_recorded_as_timed_out_and_the_run_goes_on() {
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    // A step that would outlive the timeout by far (a number no other process sleeps for); the timeout leaves the
    // other template's cold builds time enough (no-compile: `go mod download` from the loopback proxy, no compile,
    // a few seconds with either builder).
    let hang = dir.path().join("hang.Dockerfile");
    let seconds = unique_sleep(1);
    std::fs::write(&hang, format!("FROM golang:1.23\nRUN sleep {seconds}\n")).unwrap();
    let app = root().join("tests/fixtures/tiny-app");
    let before = common::tree_digest(&app);
    let out = dir.path().join("results");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .args(["run", "--app"])
        .arg(&app)
        .arg("--dockerfile")
        .arg(format!("hang={}", hang.display()))
        .arg("--dockerfile")
        .arg(format!("no-compile={}", app.join("dockerfiles/no-compile.Dockerfile").display()))
        .args(["--scenario", "no-change", "--repetitions", "1", "--builder", "both", "--build-timeout", "15s", "--proxy-port", "48221", "--out"])
        .arg(&out)
        .output()
        .expect("run layerbench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "a run with a timed-out build ends with 1:\n{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(600), "the run waited for the hung step");
    let results = Results::read(&out.join("results.json")).expect("the results file");
    assert!(results.complete, "the run went on to the end");
    for r in results.records.iter().filter(|r| r.variant == "hang") {
        assert_eq!((r.step.as_str(), r.outcome), ("baseline", layerbench::results::Outcome::TimedOut), "{r:?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains("had not finished after 15s") && error.contains("cancelled in the engine"), "{error}");
        assert!(r.wall_ms >= 15_000.0 && r.wall_ms < 75_000.0, "{} ms", r.wall_ms);
    }
    assert_eq!(results.records.iter().filter(|r| r.variant == "hang").count(), 2, "both builders' hung baselines are recorded, and nothing after them");
    let good: Vec<_> = results.records.iter().filter(|r| r.variant == "no-compile").collect();
    assert_eq!(good.len(), 4, "the other template's cells ran after the hung ones");
    assert!(good.iter().all(|r| r.outcome.is_ok()), "{good:?}");
    assert!(stdout.contains("TIMED-OUT hang × no-change"), "{stdout}");
    assert_eq!(common::tree_digest(&app), before, "a run with a failed build changed the user's app");
    // Cancelled in the engine: the hung step's process goes away, and no container is left for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeping(&seconds) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sleeping(&seconds), 0, "the hung step still runs in the engine");
    let containers = Command::new("/usr/bin/docker").args(["ps", "-a", "--no-trunc", "--format", "{{.Command}}"]).output().expect("docker ps");
    assert!(!String::from_utf8_lossy(&containers.stdout).contains(&format!("sleep {seconds}")), "a container of the hung build is left");
}

/// Starts `layerbench run` on a template whose only step hangs (`sleep <seconds>`), without a build timeout, and waits until that step runs.
fn start_hung_run(dir: &std::path::Path, seconds: &str, port: &str) -> std::process::Child {
    let hang = dir.join("hang.Dockerfile");
    std::fs::write(&hang, format!("FROM golang:1.23\nRUN sleep {seconds}\n")).unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_layerbench"));
    run.args(["run", "--app"])
        .arg(root().join("tests/fixtures/tiny-app"))
        .arg("--dockerfile")
        .arg(format!("hang={}", hang.display()))
        .args(["--scenario", "no-change", "--repetitions", "2", "--proxy-port", port, "--out"])
        .arg(dir.join("results"));
    spawn_until_sleeping(&mut run, seconds)
}

/// Starts `run` with its output captured and waits until its hung step (`sleep <seconds>`) runs.
fn spawn_until_sleeping(run: &mut Command, seconds: &str) -> std::process::Child {
    let child = run.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("start layerbench");
    let deadline = Instant::now() + Duration::from_secs(300);
    while sleeping(seconds) == 0 {
        assert!(Instant::now() < deadline, "the hung step never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
}

#[test]
fn sigterm_stops_a_run_like_ctrl_c_cancelling_the_build_and_keeping_the_results() {
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let before = common::tree_digest(&root().join("tests/fixtures/tiny-app"));
    let seconds = unique_sleep(2);
    let child = start_hung_run(dir.path(), &seconds, "48222");
    let stopped = Instant::now();
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("wait for layerbench");
    assert_eq!(common::tree_digest(&root().join("tests/fixtures/tiny-app")), before, "an interrupted run changed the user's app");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stopped.elapsed() < Duration::from_secs(60), "SIGTERM took {:?}", stopped.elapsed());
    assert!(stderr.contains("SIGTERM: cancelling the build in flight"), "{stderr}");
    assert!(stderr.contains("--resume"), "it says how to go on: {stderr}");
    let results = Results::read(&dir.path().join("results/results.json")).expect("a whole results file");
    assert!(!results.complete);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeping(&seconds) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sleeping(&seconds), 0, "the build still runs in the engine");
}

#[test]
fn a_second_interrupt_exits_at_once_leaving_the_results_file_whole() {
    use std::io::BufRead;
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let seconds = unique_sleep(3);
    let mut child = start_hung_run(dir.path(), &seconds, "48223");
    signal(&child, "INT");
    // The second interrupt as soon as the first is acknowledged, while the run is stopping.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).expect("read stderr") > 0, "layerbench ended without acknowledging the interrupt:\n{seen}");
        seen.push_str(&line);
        if line.contains("cancelling the build in flight") {
            break;
        }
    }
    signal(&child, "INT");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().expect("wait for layerbench");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupt (Ctrl-C) again: exiting now"), "the second interrupt was not the one that ended the run:\n{seen}");
    assert!(!seen.contains("layerbench: interrupted;"), "the run had already stopped on the first interrupt:\n{seen}");
    Results::read(&dir.path().join("results/results.json")).expect("a whole results file");
    // What the first interrupt began: the build is cancelled in the engine all the same.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeping(&seconds) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sleeping(&seconds), 0, "the build still runs in the engine");
}

/// A small filesystem of its own, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "layerbench-test"]).arg(dir.path()).status().expect("mount");
        assert!(status.success(), "mounting a small tmpfs needs root (CI runs as root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_last_complete_results_file_stays() {
    let disk = SmallDisk::mount(64 * 1024);
    let path = disk.0.path().join("results.json");
    let mut results = Results::read(&root().join("tests/fixtures/report/results.json")).expect("the fixture results");
    results.records.truncate(1);
    results.write(&path).expect("a small results file fits");
    let complete = std::fs::read(&path).unwrap();
    // Every record again, many times over: more than the disk holds.
    let one = results.records[0].clone();
    results.records = vec![one; 200];
    let err = results.write(&path).expect_err("the disk is full").to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("No space left on device"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), complete, "the last complete results file is intact");
    let leftovers: Vec<_> = std::fs::read_dir(disk.0.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["results.json"], "no partial file is left");
}

/// Stops the Docker engine (as `systemctl stop` would: SIGTERM, then waits until it no longer answers).
fn stop_engine() {
    let pid = std::fs::read_to_string("/var/run/docker.pid").expect("dockerd's pid file").trim().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_engine() {
    let out = Command::new(root().join("scripts/setup-engine.sh")).output().expect("run setup-engine.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `layerbench run` of a hung template and the tiny app's good one (no-compile: the run's handling is tested, not Go's), with the given extra options.
fn run_hung_and_good(dir: &std::path::Path, seconds: &str, port: &str, extra: &[&str]) -> Command {
    let hang = dir.join("hang.Dockerfile");
    std::fs::write(&hang, format!("FROM golang:1.23\nRUN sleep {seconds}\n")).unwrap();
    let app = root().join("tests/fixtures/tiny-app");
    let mut run = Command::new(env!("CARGO_BIN_EXE_layerbench"));
    run.args(["run", "--app"])
        .arg(&app)
        .arg("--dockerfile")
        .arg(format!("hang={}", hang.display()))
        .arg("--dockerfile")
        .arg(format!("no-compile={}", app.join("dockerfiles/no-compile.Dockerfile").display()))
        .args(["--scenario", "no-change", "--repetitions", "1", "--proxy-port", port])
        .args(extra);
    run
}

#[test]
fn a_lost_engine_is_waited_for_or_the_run_stops_resumable_and_resume_builds_only_what_is_missing() {
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let results_path = dir.path().join("results/results.json");
    let (first_sleep, second_sleep) = (unique_sleep(4), unique_sleep(5));

    // The engine comes back within --engine-wait: the hung cell is recorded as lost and the run goes on.
    let child = spawn_until_sleeping(run_hung_and_good(dir.path(), &first_sleep, "48224", &["--engine-wait", "90s", "--out"]).arg(dir.path().join("results")), &first_sleep);
    stop_engine();
    end_sleeping(&first_sleep);
    std::thread::sleep(Duration::from_secs(3));
    start_engine();
    let out = child.wait_with_output().expect("wait for layerbench");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "the run ended, its lost build listed:\n{stdout}\n{stderr}");
    let results = Results::read(&results_path).expect("the results file");
    assert!(results.complete);
    let hang = results.records.iter().find(|r| r.variant == "hang").expect("the hung build's record");
    assert!(hang.error.as_deref().is_some_and(|e| e.starts_with("engine connection lost")), "{hang:?}");
    assert!(results.records.iter().filter(|r| r.variant == "no-compile").all(|r| r.outcome.is_ok()));
    assert_eq!(results.records.iter().filter(|r| r.variant == "no-compile").count(), 2, "the cell after the lost one ran");

    // Resuming builds only the lost cell again (here it times out, a failure of its own) and keeps the rest.
    let good_before: Vec<_> = results.records.iter().filter(|r| r.variant == "no-compile").cloned().collect();
    let out = run_hung_and_good(dir.path(), &first_sleep, "48224", &["--build-timeout", "5s", "--resume"]).arg(&results_path).output().expect("resume");
    // Lines longer than 100 columns wrap: compare the words.
    let stdout = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(stdout.contains("1 of its 2 cells left to build"), "{stdout}");
    let resumed = Results::read(&results_path).expect("the results file");
    assert_eq!(resumed.run_id, results.run_id);
    let hang: Vec<_> = resumed.records.iter().filter(|r| r.variant == "hang").collect();
    assert_eq!(hang.len(), 1, "the lost record was replaced");
    assert_eq!(hang[0].outcome, layerbench::results::Outcome::TimedOut);
    let good_after: Vec<_> = resumed.records.iter().filter(|r| r.variant == "no-compile").cloned().collect();
    assert_eq!(good_after, good_before, "the finished cell was kept, not built again");

    // The engine stays away longer than --engine-wait: the run stops, everything kept, and says how to resume.
    let other = dir.path().join("second");
    let child = spawn_until_sleeping(run_hung_and_good(dir.path(), &second_sleep, "48224", &["--engine-wait", "4s", "--out"]).arg(&other), &second_sleep);
    stop_engine();
    end_sleeping(&second_sleep);
    let out = child.wait_with_output().expect("wait for layerbench");
    start_engine();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("was not back after 4s") && stderr.contains("--resume"), "{stderr}");
    let stopped = Results::read(&other.join("results.json")).expect("the results file");
    assert!(!stopped.complete);
    assert!(stopped.records.iter().any(|r| r.error.as_deref().is_some_and(|e| e.starts_with("engine connection lost"))));
}

#[test]
fn an_image_a_container_and_a_build_cache_record_layerbench_did_not_make_survive_a_run_and_clean() {
    let _engine = common::engine_lock();
    let docker = |args: &[&str]| {
        let out = Command::new("/usr/bin/docker").args(args).env("DOCKER_BUILDKIT", "1").output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Foreign: an image built by the Docker CLI (which also leaves BuildKit cache records), and a container from it.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let marker = format!("foreign {}", std::process::id());
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM debian:bookworm-slim\nRUN echo '{marker}' > /foreign\n")).unwrap();
    let tag = "layerbench-test/foreign:keep";
    docker(&["build", "-q", "-t", tag, &dir.path().display().to_string()]);
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    let container = docker(&["create", "--name", "layerbench-test-foreign", tag]);
    // Build cache records: the same build again is all cached, and stays so.
    let cached = |when: &str| {
        let out = Command::new("/usr/bin/docker").args(["build", "--progress", "plain", "-t", tag]).arg(dir.path()).env("DOCKER_BUILDKIT", "1").output().expect("docker build");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("CACHED"), "{when}: the foreign build's cache record is gone:\n{log}");
    };
    cached("before");

    let app = root().join("tests/fixtures/tiny-app");
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .args(["run", "--app"])
        .arg(&app)
        .args(["--variant", "no-compile", "--scenario", "no-change", "--repetitions", "1", "--proxy-port", "48225", "--out"])
        .arg(dir.path().join("results"))
        .output()
        .expect("run layerbench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clean = Command::new(env!("CARGO_BIN_EXE_layerbench")).arg("clean").output().expect("layerbench clean");
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));

    assert_eq!(docker(&["image", "inspect", "--format", "{{.Id}}", tag]), image, "the foreign image was removed");
    assert_eq!(docker(&["container", "inspect", "--format", "{{.Id}}", &container]), container, "the foreign container was removed");
    cached("after a run and clean");
    docker(&["rm", &container]);
    docker(&["rmi", tag]);
}

#[test]
fn two_runs_at_once_on_one_engine_keep_apart_and_clean_run_removes_only_its_own() {
    let _engine = common::engine_lock();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = root().join("tests/fixtures/tiny-app");
    let start = |name: &str, port: &str| {
        Command::new(env!("CARGO_BIN_EXE_layerbench"))
            .args(["run", "--app"])
            .arg(&app)
            .args(["--variant", "no-compile", "--scenario", "edit-go-source", "--repetitions", "1", "--proxy-port", port, "--out"])
            .arg(dir.path().join(name))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start layerbench")
    };
    let (first, second) = (start("first", "48226"), start("second", "48227"));
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    for out in [&first, &second] {
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let a = Results::read(&dir.path().join("first/results.json")).unwrap();
    let b = Results::read(&dir.path().join("second/results.json")).unwrap();
    assert_ne!(a.run_id, b.run_id);
    for r in [&a, &b] {
        assert!(r.complete && r.records.iter().all(|x| x.outcome.is_ok()), "{:?}", r.records);
        let edit = r.records.iter().find(|x| x.step != "baseline").unwrap();
        assert!(edit.layers.iter().any(|l| l.instruction.starts_with("RUN go mod download") && l.cached), "each run's rebuild hit its own download layer");
    }
    let images_of = |run: &str| {
        let out = Command::new("/usr/bin/docker").args(["images", "-q", "--filter", &format!("label=io.layerbench.run={run}")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(images_of(&a.run_id) > 0 && images_of(&b.run_id) > 0, "each run's images carry its run id");
    // A port in use is an error naming the port and the option.
    let busy = std::net::TcpListener::bind("127.0.0.1:48228").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_layerbench"))
        .args(["run", "--app"])
        .arg(&app)
        .args(["--variant", "no-compile", "--scenario", "no-change", "--proxy-port", "48228", "--out"])
        .arg(dir.path().join("busy"))
        .output()
        .unwrap();
    drop(busy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("port 127.0.0.1:48228 on loopback is already in use") && stderr.contains("--proxy-port"), "{stderr}");

    let clean = Command::new(env!("CARGO_BIN_EXE_layerbench")).args(["clean", "--run", &a.run_id]).output().unwrap();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert_eq!(images_of(&a.run_id), 0, "clean --run removed the first run's images");
    assert!(images_of(&b.run_id) > 0, "clean --run left the other run's images alone");
    let clean = Command::new(env!("CARGO_BIN_EXE_layerbench")).args(["clean", "--run", &b.run_id]).output().unwrap();
    assert!(clean.status.success());
}
