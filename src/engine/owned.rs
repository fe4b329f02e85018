//! Engines layerbench owns: a dockerd of its own per name (data root, exec root, pid file, socket and log under the cache folder), started, listed and stopped without touching the host's firewall, bridge or default engine.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The longest engine name (it appears in socket paths, which the kernel caps at 108 bytes).
pub const MAX_NAME_LEN: usize = 32;

/// The name `engine start` uses when none is given.
pub const DEFAULT_OWNED_NAME: &str = "private";

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// The longest socket dockerd and its containerd make under the exec root.
const LONGEST_EXEC_SOCKET: &str = "containerd/containerd.sock.ttrpc";

/// How long a new dockerd may take to answer.
const START_WAIT: Duration = Duration::from_secs(60);

/// How long a dockerd may take to stop after SIGTERM before it gets SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How long its leftover helpers (containerd, shims) may take after SIGTERM before they get SIGKILL.
const HELPER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OwnedEngineError {
    #[error("{0:?} is not an engine name: use 1 to {MAX_NAME_LEN} of a-z, 0-9 and `-`, not starting with `-`, and not `default` (which means the engine DOCKER_HOST or the default socket reaches)")]
    BadName(String),
    #[error("the engine {name} is already running (dockerd pid {pid}, socket {}); `layerbench engine stop --name {name}` stops it", socket.display())]
    AlreadyRunning { name: String, pid: u32, socket: PathBuf },
    #[error("layerbench owns no engine named {name} (no folder {}); `layerbench engine ls` lists those it owns", dir.display())]
    NoSuchEngine { name: String, dir: PathBuf },
    #[error("the dockerd of engine {name} did not answer on {} within {} s ({why}); its log {} ends with:\n{tail}", socket.display(), START_WAIT.as_secs(), log.display())]
    DidNotStart {
        name: String,
        socket: PathBuf,
        why: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the {store} image store needs Docker 24 or later: start engine {name} with `--release trixie` (Docker 26.1), not the host's {release}")]
    StoreNeedsRelease { name: String, store: &'static str, release: String },
    #[error("engine {name} kept the data root of a {was} engine ({was_store} image store); start it again with `--release {was} --image-store {was_store}`, or `layerbench engine stop --name {name}` to remove it first")]
    KeptDataDiffers { name: String, was: String, was_store: &'static str },
    #[error(transparent)]
    Release(#[from] super::release::ReleaseError),
    #[error("stopping engine {name} left {what}")]
    LeftBehind { name: String, what: String },
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {} is not valid: {source}", path.display())]
    BadState { path: PathBuf, source: serde_json::Error },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OwnedEngineError {
    let path = path.to_path_buf();
    move |source| OwnedEngineError::Io { action, path, source }
}

/// What `engine start` wrote about a running engine (`state.json` in its folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedEngineState {
    pub name: String,
    pub socket: PathBuf,
    /// The dockerd's pid; `None` once stopped with its data root kept.
    pub pid: Option<u32>,
    /// Seconds since the Unix epoch.
    pub started_unix: u64,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub log: PathBuf,
    /// The ids of the base images loaded into it: `Engine::empty` keeps these.
    #[serde(default)]
    pub base_images: Vec<String>,
    /// The Debian release whose dockerd it runs (`bookworm`: the host's own; another: from that release's root).
    #[serde(default = "host_release", skip_serializing_if = "is_host_release")]
    pub release: String,
    /// The root filesystem its dockerd runs from; `None` for the host's dockerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "is_default_store")]
    pub image_store: ImageStore,
    /// The inode of the mount namespace a dockerd of a release's root runs in (`/proc/<pid>/ns/mnt`): `stop` ends
    /// every process left in it, so none of its mounts outlives the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_namespace: Option<u64>,
}

/// The inode of `pid`'s mount namespace (`mnt:[4026532301]`).
fn mount_namespace(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    link.to_str()?.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// The processes (not this one) in the mount namespace `inode`.
fn processes_in_namespace(inode: u64) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && mount_namespace(*pid) == Some(inode))
        .collect()
}

fn host_release() -> String {
    super::release::HOST_RELEASE.to_string()
}

fn is_host_release(release: &String) -> bool {
    release == super::release::HOST_RELEASE
}

fn is_default_store(store: &ImageStore) -> bool {
    *store == ImageStore::default()
}

/// Where an engine keeps images: its own graph driver (overlay2), or containerd's snapshotters, the default of new
/// Docker 29 installs (`{"features": {"containerd-snapshotter": true}}` in Docker 26's daemon.json).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStore {
    #[default]
    Graphdriver,
    Containerd,
}

impl std::str::FromStr for ImageStore {
    type Err = String;

    fn from_str(s: &str) -> Result<ImageStore, String> {
        match s {
            "graphdriver" => Ok(ImageStore::Graphdriver),
            "containerd" => Ok(ImageStore::Containerd),
            other => Err(format!("{other:?} is not an image store: use graphdriver (the engine's own) or containerd")),
        }
    }
}

impl ImageStore {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStore::Graphdriver => "graphdriver",
            ImageStore::Containerd => "containerd",
        }
    }

    /// The daemon.json an engine with this store starts with.
    fn daemon_config(self) -> &'static str {
        match self {
            ImageStore::Graphdriver => "{}\n",
            ImageStore::Containerd => "{\"features\": {\"containerd-snapshotter\": true}}\n",
        }
    }
}

/// How `engine start` runs an engine: the Debian release whose dockerd it runs, and its image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    pub release: String,
    pub image_store: ImageStore,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions { release: host_release(), image_store: ImageStore::default() }
    }
}

impl OwnedEngineState {
    /// `unix:///…` for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Where an engine's files go. Everything is under its folder, except the exec root when the cache folder's path is
/// so long that the sockets under it would pass the kernel's 108-byte limit: then it is `/run/layerbench-<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLayout {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
}

impl EngineLayout {
    pub fn new(engines_dir: &Path, name: &str) -> EngineLayout {
        let dir = engines_dir.join(name);
        let short = PathBuf::from(format!("/run/layerbench-{name}"));
        let fits = |p: &Path| p.as_os_str().len() <= MAX_SOCKET_PATH;
        let exec_root = if fits(&dir.join("exec").join(LONGEST_EXEC_SOCKET)) { dir.join("exec") } else { short.join("exec") };
        let socket = if fits(&dir.join("docker.sock")) { dir.join("docker.sock") } else { short.join("docker.sock") };
        EngineLayout {
            socket,
            data_root: dir.join("data"),
            exec_root,
            pidfile: dir.join("dockerd.pid"),
            config: dir.join("daemon.json"),
            log: dir.join("dockerd.log"),
            state: dir.join("state.json"),
            dir,
        }
    }

    /// The folders a dockerd run from a release's root is given, at their own paths: the engine's folder and those
    /// outside it.
    pub fn binds(&self) -> Vec<PathBuf> {
        std::iter::once(self.dir.clone()).chain(self.outside()).collect()
    }

    /// The folders outside `dir` this engine uses (the short exec root's parent, when it has one).
    fn outside(&self) -> Vec<PathBuf> {
        [&self.exec_root, &self.socket]
            .iter()
            .filter(|p| !p.starts_with(&self.dir))
            .filter_map(|p| p.ancestors().find(|a| a.parent() == Some(Path::new("/run"))).map(Path::to_path_buf))
            .fold(Vec::new(), |mut all, p| {
                if !all.contains(&p) {
                    all.push(p);
                }
                all
            })
    }
}

/// Checks an engine name: 1 to 32 of `[a-z0-9-]`, not starting with `-`, not `default`.
pub fn check_name(name: &str) -> Result<(), OwnedEngineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name != "default"
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OwnedEngineError::BadName(name.to_string()))
    }
}

/// The state of the owned engine `name`, or `None` when it has no state file.
pub fn read_state(engines_dir: &Path, name: &str) -> Result<Option<OwnedEngineState>, OwnedEngineError> {
    let path = EngineLayout::new(engines_dir, name).state;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|source| OwnedEngineError::BadState { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OwnedEngineError::Io { action: "read", path, source }),
    }
}

fn write_state(path: &Path, state: &OwnedEngineState) -> Result<(), OwnedEngineError> {
    let text = serde_json::to_string_pretty(state).map_err(|source| OwnedEngineError::BadState { path: path.to_path_buf(), source })?;
    crate::durable::write(path, text.as_bytes()).map_err(io("write", path))
}

/// Records the ids of the base images loaded into a running engine (`Engine::empty` keeps them).
pub fn record_base_images(engines_dir: &Path, name: &str, ids: Vec<String>) -> Result<(), OwnedEngineError> {
    let layout = EngineLayout::new(engines_dir, name);
    let mut state = read_state(engines_dir, name)?.ok_or_else(|| OwnedEngineError::NoSuchEngine { name: name.to_string(), dir: layout.dir.clone() })?;
    state.base_images = ids;
    write_state(&layout.state, &state)
}

/// Adds `id` to the base images recorded for a running engine, for a stand-in made after `engine start`.
pub fn add_base_image(engines_dir: &Path, name: &str, id: &str) -> Result<(), OwnedEngineError> {
    let layout = EngineLayout::new(engines_dir, name);
    let mut state = read_state(engines_dir, name)?.ok_or_else(|| OwnedEngineError::NoSuchEngine { name: name.to_string(), dir: layout.dir.clone() })?;
    if !state.base_images.iter().any(|b| b == id) {
        state.base_images.push(id.to_string());
        write_state(&layout.state, &state)?;
    }
    Ok(())
}

/// Whether `pid` is a live dockerd serving `socket` (a pid reused by another program does not count).
pub fn dockerd_alive(pid: u32, socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let socket = format!("unix://{}", socket.display());
    args.first().is_some_and(|a| a.ends_with("dockerd")) && args.contains(&socket)
}

/// The running state of an owned engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Stopped with its data root kept, or never started whole.
    Stopped,
    /// Its state names a dockerd that is gone (the machine restarted, or it was killed).
    StalePid,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Running => "running",
            Liveness::Stopped => "stopped",
            Liveness::StalePid => "stale pid",
        }
    }
}

/// Whether the engine of this state runs.
pub fn liveness(state: Option<&OwnedEngineState>) -> Liveness {
    match state.and_then(|s| s.pid.map(|pid| (pid, &s.socket))) {
        None => Liveness::Stopped,
        Some((pid, socket)) if dockerd_alive(pid, socket) => Liveness::Running,
        Some(_) => Liveness::StalePid,
    }
}

/// The bridge an owned engine's dockerd gets (at most 15 bytes, the kernel's limit for a link name).
pub fn bridge_name(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex = hex::encode(&digest[..5]);
    format!("lb{hex}")
}

/// Creates the engine's own bridge (kept when it exists from a start that did not stop cleanly). dockerd refuses
/// `--bridge=NAME` for a link that does not exist, and with `--bridge=none` it deletes the host's `docker0`.
fn add_bridge(bridge: &str) -> Result<(), OwnedEngineError> {
    if Path::new("/sys/class/net").join(bridge).exists() {
        return Ok(());
    }
    let out = Command::new("ip").args(["link", "add", "name", bridge, "type", "bridge"]).output().map_err(io("run `ip link add` for", Path::new(bridge)))?;
    if !out.status.success() {
        return Err(OwnedEngineError::Io {
            action: "create the bridge",
            path: PathBuf::from(bridge),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// Deletes the engine's own bridge, if it is there.
fn delete_bridge(bridge: &str) {
    if Path::new("/sys/class/net").join(bridge).exists() {
        let _ = Command::new("ip").args(["link", "delete", bridge]).output();
    }
}

/// Starts the dockerd of engine `name` and waits until it answers; the base images are the caller's next step. The
/// host's dockerd for the host's release; another release's from its root (made first when missing: `cache`,
/// `mirror`), in a mount namespace of its own.
pub async fn start_dockerd(engines_dir: &Path, name: &str, options: &StartOptions, cache: &Path, mirror: &str) -> Result<OwnedEngineState, OwnedEngineError> {
    check_name(name)?;
    super::release::check_release(&options.release)?;
    if options.image_store == ImageStore::Containerd && options.release == super::release::HOST_RELEASE {
        return Err(OwnedEngineError::StoreNeedsRelease { name: name.to_string(), store: ImageStore::Containerd.as_str(), release: options.release.clone() });
    }
    let previous = read_state(engines_dir, name)?;
    if let (Liveness::Running, Some(state)) = (liveness(previous.as_ref()), &previous) {
        return Err(OwnedEngineError::AlreadyRunning { name: name.to_string(), pid: state.pid.unwrap_or_default(), socket: state.socket.clone() });
    }
    if let Some(kept) = previous.as_ref().filter(|s| s.release != options.release || s.image_store != options.image_store) {
        return Err(OwnedEngineError::KeptDataDiffers { name: name.to_string(), was: kept.release.clone(), was_store: kept.image_store.as_str() });
    }
    let root = if options.release == super::release::HOST_RELEASE {
        None
    } else {
        let (cache, release, mirror) = (cache.to_path_buf(), options.release.clone(), mirror.to_string());
        let made = tokio::task::spawn_blocking(move || super::release::ensure_root(&cache, &release, &mirror))
            .await
            .map_err(|e| OwnedEngineError::Io { action: "make the root of", path: PathBuf::from(&options.release), source: std::io::Error::other(e) })?;
        Some(made?)
    };
    let layout = EngineLayout::new(engines_dir, name);
    // A dockerd that died left its processes, mounts or socket: clear them, keeping its data root.
    if liveness(previous.as_ref()) == Liveness::StalePid {
        stop(engines_dir, name, true)?;
    }
    for dir in [layout.dir.as_path(), &layout.data_root, &layout.exec_root].into_iter().chain(layout.socket.parent()) {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    std::fs::write(&layout.config, options.image_store.daemon_config()).map_err(io("write", &layout.config))?;
    let _ = std::fs::remove_file(&layout.socket);
    let bridge = bridge_name(name);
    add_bridge(&bridge)?;
    let log = std::fs::File::create(&layout.log).map_err(io("create", &layout.log))?;
    let log_err = log.try_clone().map_err(io("open", &layout.log))?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    args.push("--data-root".into());
    args.push(layout.data_root.clone().into());
    for (flag, path) in [("--exec-root", &layout.exec_root), ("--pidfile", &layout.pidfile), ("--config-file", &layout.config)] {
        args.push(flag.into());
        args.push(path.clone().into());
    }
    args.push("-H".into());
    args.push(format!("unix://{}", layout.socket.display()).into());
    // No change to the host's network: a bridge of its own (dockerd with `--bridge=none` deletes the host's
    // `docker0`), no firewall rules, no forwarding switched on.
    args.push(format!("--bridge={bridge}").into());
    args.extend(["--iptables=false", "--ip-masq=false", "--ip-forward=false"].map(std::ffi::OsString::from));
    // Apart from the default engine's objects even should it share a system containerd.
    args.push(format!("--containerd-namespace=layerbench-{name}").into());
    args.push(format!("--containerd-plugins-namespace=layerbench-{name}-plugins").into());
    let mut command = match &root {
        None => {
            let mut c = Command::new("dockerd");
            c.args(&args);
            c
        }
        // Its folders (and the short exec root, when it has one) are seen at their own paths inside the root.
        Some(root) => super::release::command_in_root(root, &layout.binds(), "dockerd", &args),
    };
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // It outlives layerbench: its own session, and none of the caller's open files (a lock, a pipe a CI job waits on).
    let inherited = open_fds_above_stderr();
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, fcntl) on a list made before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &inherited {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(io("start dockerd for", &layout.dir))?;
    let pid = child.id();
    let state = OwnedEngineState {
        name: name.to_string(),
        socket: layout.socket.clone(),
        pid: Some(pid),
        started_unix: crate::results::unix_ms_now() / 1000,
        data_root: layout.data_root.clone(),
        exec_root: layout.exec_root.clone(),
        log: layout.log.clone(),
        base_images: Vec::new(),
        release: options.release.clone(),
        root,
        image_store: options.image_store,
        mount_namespace: None,
    };
    write_state(&layout.state, &state)?;
    let deadline = Instant::now() + START_WAIT;
    let why = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break format!("it exited: {status}");
        }
        if layout.socket.exists() && super::Engine::answers_at(&layout.socket).await {
            // What `stop` clears: every process left in the mount namespace of a dockerd run from a release's root.
            let mut state = state;
            if state.root.is_some() {
                state.mount_namespace = mount_namespace(pid);
                write_state(&layout.state, &state)?;
            }
            // A release whose Docker ignores the setting says so here (an engine that cannot tell is taken at its word).
            let store = match super::Engine::connect_spec(name).await {
                Ok(engine) => engine.machine().await.ok().map(|m| m.image_store),
                Err(_) => None,
            };
            match store {
                Some(store) if store != options.image_store.as_str() => {
                    break format!("it answers with the {store} image store, not the {} one asked for (its Docker release does not have it)", options.image_store.as_str())
                }
                _ => return Ok(state),
            }
        }
        if Instant::now() >= deadline {
            break "it is still running; it was stopped".to_string();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let tail = log_tail(&layout.log, 20);
    // A data root kept from an earlier start (`stop --keep`) stays; a new engine leaves nothing.
    let _ = stop(engines_dir, name, previous.is_some());
    let _ = child.try_wait();
    Err(OwnedEngineError::DidNotStart {
        name: name.to_string(),
        socket: layout.socket,
        why,
        log: layout.log,
        tail,
    })
}

/// The Docker CLI of engine `name`'s own release, pointed at it: the host's `/usr/bin/docker` for the host's release,
/// else the `docker` (and buildx) of that release's root, run there with `binds` (the folders it reads, such as a
/// build context) seen at their own paths. For comparing with what `docker build` does on the same engine.
pub fn cli_command(engines_dir: &Path, name: &str, binds: &[PathBuf]) -> Result<Command, OwnedEngineError> {
    let layout = EngineLayout::new(engines_dir, name);
    let state = read_state(engines_dir, name)?.ok_or_else(|| OwnedEngineError::NoSuchEngine { name: name.to_string(), dir: layout.dir.clone() })?;
    let mut command = match &state.root {
        None => Command::new("/usr/bin/docker"),
        Some(root) => {
            let all: Vec<PathBuf> = layout.binds().into_iter().chain(binds.iter().cloned()).collect();
            super::release::command_in_root(root, &all, "docker", &[])
        }
    };
    command.env("DOCKER_HOST", state.docker_host());
    Ok(command)
}

/// The file descriptors of this process above 2 (listed before a fork).
fn open_fds_above_stderr() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default()
}

/// The last `lines` lines of a log file (or why it could not be read).
fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    match std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
        }
        Err(e) => format!("  (unreadable: {e})"),
    }
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub name: String,
    /// The dockerd's pid, when one was running.
    pub pid: Option<u32>,
    /// Whether it had to be killed (it did not stop within 30 s of SIGTERM).
    pub killed: bool,
    /// Helper processes (containerd, shims) still there after dockerd and stopped here.
    pub helpers_stopped: usize,
    pub unmounted: usize,
    /// Whether the data root was kept (`--keep`).
    pub kept_data: bool,
}

/// Stops engine `name`: SIGTERM to its dockerd (SIGKILL after 30 s), then its containerd and shims if still there,
/// unmounts whatever is left under its folders, and removes them (the data root stays with `keep`). Leaves nothing:
/// no process, no mount, no socket.
pub fn stop(engines_dir: &Path, name: &str, keep: bool) -> Result<Stopped, OwnedEngineError> {
    check_name(name)?;
    let layout = EngineLayout::new(engines_dir, name);
    if !layout.dir.exists() {
        return Err(OwnedEngineError::NoSuchEngine { name: name.to_string(), dir: layout.dir });
    }
    let state = read_state(engines_dir, name)?;
    let socket = state.as_ref().map_or(layout.socket.clone(), |s| s.socket.clone());
    let exec_root = state.as_ref().map_or(layout.exec_root.clone(), |s| s.exec_root.clone());
    let pid = state.as_ref().and_then(|s| s.pid).filter(|pid| dockerd_alive(*pid, &socket));
    let mut killed = false;
    if let Some(pid) = pid {
        signal(pid, libc::SIGTERM);
        if !wait_gone(&[pid], STOP_WAIT) {
            signal(pid, libc::SIGKILL);
            killed = true;
            wait_gone(&[pid], Duration::from_secs(5));
        }
    }
    // What referenced its folders: its containerd and the shims of its containers.
    let roots: Vec<PathBuf> = [layout.dir.clone(), exec_root.clone()].into_iter().collect();
    let helpers = processes_referencing(&roots);
    for &p in &helpers {
        signal(p, libc::SIGTERM);
    }
    if !wait_gone(&helpers, HELPER_WAIT) {
        for &p in &helpers {
            signal(p, libc::SIGKILL);
        }
        wait_gone(&helpers, Duration::from_secs(5));
    }
    // A dockerd of a release's root: whatever is left in its mount namespace holds that namespace's mounts.
    let namespace = state.as_ref().and_then(|s| s.mount_namespace);
    let in_namespace = namespace.map_or_else(Vec::new, processes_in_namespace);
    for &p in &in_namespace {
        signal(p, libc::SIGKILL);
    }
    wait_gone(&in_namespace, Duration::from_secs(5));
    // A dockerd that was killed leaves its containers' processes running, reparented to init: they are found by the
    // container ids (its data root's `containers/` folders) in their cgroups.
    let data_root = state.as_ref().map_or(layout.data_root.clone(), |s| s.data_root.clone());
    let ids = container_ids(&data_root);
    let orphans = processes_in_containers(&ids);
    for &p in &orphans {
        signal(p, libc::SIGKILL);
    }
    wait_gone(&orphans, Duration::from_secs(5));
    remove_container_cgroups(&ids);
    let mut unmounted = 0;
    for mount in mounts_under(&roots) {
        let Ok(c) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: a NUL-terminated path; MNT_DETACH never blocks.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            unmounted += 1;
        }
    }
    let _ = std::fs::remove_file(&socket);
    delete_bridge(&bridge_name(name));
    for dir in layout.outside() {
        if dir.exists() {
            remove_tree(&dir)?;
        }
    }
    if keep {
        for entry in std::fs::read_dir(&layout.dir).map_err(io("read", &layout.dir))? {
            let path = entry.map_err(io("read", &layout.dir))?.path();
            if path == layout.data_root || path == layout.state {
                continue;
            }
            if path.is_dir() {
                remove_tree(&path)?;
            } else {
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
            }
        }
        if let Some(mut state) = state {
            state.pid = None;
            write_state(&layout.state, &state)?;
        }
    } else {
        remove_tree(&layout.dir)?;
    }
    let left: Vec<String> = processes_referencing(&roots)
        .iter()
        .chain(processes_in_containers(&ids).iter())
        .chain(namespace.map_or_else(Vec::new, processes_in_namespace).iter())
        .map(|p| format!("process {p}"))
        .chain(mounts_under(&roots).iter().map(|m| format!("mount {}", m.display())))
        .chain(socket.exists().then(|| format!("socket {}", socket.display())))
        .chain(Path::new("/sys/class/net").join(bridge_name(name)).exists().then(|| format!("bridge {}", bridge_name(name))))
        .collect();
    if !left.is_empty() {
        return Err(OwnedEngineError::LeftBehind { name: name.to_string(), what: left.join(", ") });
    }
    Ok(Stopped {
        name: name.to_string(),
        pid,
        killed,
        helpers_stopped: helpers.len() + orphans.len() + in_namespace.len(),
        unmounted,
        kept_data: keep,
    })
}

/// How many removals run at once: on this kind of disk an unlink waits on the device, so one thread takes a minute
/// for a data root with base images (33,000 files) and eight take seconds.
const REMOVERS: usize = 8;

/// Removes `dir` and everything under it (symlinks not followed), `REMOVERS` at a time: files first, then folders,
/// deepest first.
fn remove_tree(dir: &Path) -> Result<(), OwnedEngineError> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| OwnedEngineError::Io { action: "read", path: e.path().unwrap_or(dir).to_path_buf(), source: e.into() })?;
        if entry.file_type().is_dir() {
            dirs.push((entry.depth(), entry.into_path()));
        } else {
            files.push(entry.into_path());
        }
    }
    in_parallel(&files, |f| std::fs::remove_file(f))?;
    dirs.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    for level in dirs.chunk_by(|a, b| a.0 == b.0) {
        let paths: Vec<PathBuf> = level.iter().map(|(_, p)| p.clone()).collect();
        in_parallel(&paths, |d| std::fs::remove_dir(d))?;
    }
    Ok(())
}

/// Runs `remove` on every path, `REMOVERS` threads at once; the first failure (other than already gone) is returned.
fn in_parallel(paths: &[PathBuf], remove: impl Fn(&Path) -> std::io::Result<()> + Sync) -> Result<(), OwnedEngineError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..REMOVERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                match remove(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(OwnedEngineError::Io { action: "remove", path: path.clone(), source: e });
                        }
                    }
                    _ => {}
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a positive pid signals that one process only.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Waits until none of `pids` is alive (a zombie counts as gone); whether they all went within `limit`.
fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let alive = pids.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"))
        });
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes (not this one) whose command line names a path under one of `roots`.
pub fn processes_referencing(roots: &[PathBuf]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            cmdline.split(|b| *b == 0).any(|arg| {
                let arg = String::from_utf8_lossy(arg);
                let arg = arg.strip_prefix("unix://").unwrap_or(&arg);
                // `--flag=/path` as well as `/path`.
                let path = arg.rsplit_once('=').map_or(arg, |(_, p)| p);
                roots.iter().any(|r| Path::new(path).starts_with(r))
            })
        })
        .collect()
}

/// The ids of the containers an engine has or had (the folders of `<data root>/containers`).
fn container_ids(data_root: &Path) -> Vec<String> {
    std::fs::read_dir(data_root.join("containers"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
                .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose cgroup path names one of the container ids `ids`.
fn processes_in_containers(ids: &[String]) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroups| ids.iter().any(|id| cgroups.contains(id.as_str())))
        })
        .collect()
}

/// Removes the (empty) cgroups a killed dockerd left for its containers: `docker/<id>` under the cgroup root
/// (cgroup v2) or under each controller's (v1). Only these ids' folders are touched; a busy one stays.
fn remove_container_cgroups(ids: &[String]) {
    let root = Path::new("/sys/fs/cgroup");
    let controllers: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for id in ids {
        for base in controllers.iter().map(PathBuf::as_path).chain([root]) {
            let _ = std::fs::remove_dir(base.join("docker").join(id));
        }
    }
}

/// The mount points under one of `roots` (per /proc/self/mountinfo), deepest first.
pub fn mounts_under(roots: &[PathBuf]) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| roots.iter().any(|r| p.starts_with(r)))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// Mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One engine layerbench owns, as `engine ls` shows it.
#[derive(Debug, Clone)]
pub struct OwnedEngineListing {
    pub name: String,
    pub liveness: Liveness,
    pub state: Option<OwnedEngineState>,
    pub socket: PathBuf,
    /// Bytes on disk under its folder (hard links counted once).
    pub disk_bytes: u64,
}

/// Every engine folder under `engines_dir`, by name.
pub fn list(engines_dir: &Path) -> Result<Vec<OwnedEngineListing>, OwnedEngineError> {
    let entries = match std::fs::read_dir(engines_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(OwnedEngineError::Io { action: "read", path: engines_dir.to_path_buf(), source }),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| check_name(n).is_ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let state = read_state(engines_dir, &name)?;
            let layout = EngineLayout::new(engines_dir, &name);
            Ok(OwnedEngineListing {
                liveness: liveness(state.as_ref()),
                socket: state.as_ref().map_or(layout.socket, |s| s.socket.clone()),
                disk_bytes: disk_usage(&layout.dir),
                state,
                name,
            })
        })
        .collect()
}

/// Bytes allocated under `dir`, hard links counted once, mounts not crossed.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(dir)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.nlink() <= 1 || seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_letters_digits_and_dashes() {
        for good in ["private", "a", "ci-2", "0", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Private", "a_b", "a.b", "a/b", "-a", "default", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_layout_keeps_everything_in_the_engine_folder_when_the_sockets_fit() {
        let layout = EngineLayout::new(Path::new("/root/.cache/layerbench/engines"), "private");
        assert_eq!(layout.socket, Path::new("/root/.cache/layerbench/engines/private/docker.sock"));
        assert_eq!(layout.exec_root, Path::new("/root/.cache/layerbench/engines/private/exec"));
        assert!(layout.outside().is_empty());
    }

    #[test]
    fn a_long_cache_path_moves_the_exec_root_to_a_short_folder_under_run() {
        let long = PathBuf::from("/").join("d".repeat(80));
        let layout = EngineLayout::new(&long, "private");
        assert_eq!(layout.exec_root, Path::new("/run/layerbench-private/exec"));
        assert!(layout.data_root.starts_with(&long));
        assert!(layout.exec_root.join(LONGEST_EXEC_SOCKET).as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(layout.socket.as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(layout.socket.starts_with(&long), "the socket still fits in the engine folder");
        assert_eq!(layout.outside(), vec![PathBuf::from("/run/layerbench-private")]);
    }

    #[test]
    fn a_tree_is_removed_whole_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("kept"), "x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("engine");
        for i in 0..50 {
            let d = tree.join(format!("a{}/b{}", i % 5, i % 7));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), "data").unwrap();
        }
        std::os::unix::fs::symlink(outside.path(), tree.join("link")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.path().join("kept").exists());
    }

    #[test]
    fn a_process_mount_namespace_is_read_and_its_processes_found() {
        let mine = mount_namespace(std::process::id()).expect("this process has a mount namespace");
        assert!(mine > 0);
        assert!(!processes_in_namespace(mine).contains(&std::process::id()), "the caller is never in its own list");
        assert_eq!(mount_namespace(u32::MAX), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c\134d"), "/a b/c\\d");
        assert_eq!(unescape_mountinfo(r"/plain\"), "/plain\\");
    }

    #[test]
    fn a_state_without_a_pid_is_stopped() {
        let state = OwnedEngineState {
            name: "x".into(),
            socket: "/nonexistent/docker.sock".into(),
            pid: None,
            started_unix: 0,
            data_root: "/nonexistent/data".into(),
            exec_root: "/nonexistent/exec".into(),
            log: "/nonexistent/dockerd.log".into(),
            base_images: vec![],
            release: host_release(),
            root: None,
            image_store: ImageStore::Graphdriver,
            mount_namespace: None,
        };
        assert_eq!(liveness(Some(&state)), Liveness::Stopped);
        assert_eq!(liveness(None), Liveness::Stopped);
        // This test's own pid is no dockerd serving that socket.
        let stale = OwnedEngineState { pid: Some(std::process::id()), ..state };
        assert_eq!(liveness(Some(&stale)), Liveness::StalePid);
        assert_eq!(stale.docker_host(), "unix:///nonexistent/docker.sock");
    }
}
