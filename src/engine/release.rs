//! Engines of other Docker releases: the Debian root filesystems they run from (made once with debootstrap and apt,
//! kept under the cache folder), and how a program of such a root runs: in a mount namespace of its own where the
//! root is a mount point with /proc, /sys and /dev bound in, so nothing it mounts is seen, or left, on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The release whose engine is the host's own `dockerd` (Debian 12's docker.io, Docker 20.10).
pub const HOST_RELEASE: &str = "bookworm";

const ROOT_SCRIPT: &str = include_str!("../../scripts/build-engine-root.sh");

/// What the mount namespace of a release's program is given, then `chroot ROOT PROGRAM ARGS…`. Arguments: the
/// root, the number of folders to bind, those folders, then the program and its arguments. Each folder is bound at
/// its own path inside the root, so paths mean the same inside and outside.
const ENTER_SCRIPT: &str = r#"set -e
root=$1; n=$2; shift 2
mount --bind "$root" "$root"
for d in proc sys dev; do mount --rbind "/$d" "$root/$d"; done
mount -t tmpfs layerbench-run "$root/run"
mount -t tmpfs layerbench-tmp "$root/tmp"
while [ "$n" -gt 0 ]; do
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    shift; n=$((n - 1))
done
exec chroot "$root" "$@"
"#;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0:?} is not a Debian release name (lowercase letters, like `trixie`)")]
    BadName(String),
    #[error("debootstrap is not installed, and the {release} root needs it: `apt-get install -y debootstrap`")]
    NoDebootstrap { release: String },
    #[error("making the {release} root at {} failed ({status}); its log is {}", root.display(), log.display())]
    Build { release: String, root: PathBuf, status: String, log: PathBuf },
    #[error("failed to {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError {
    let path = path.to_path_buf();
    move |source| ReleaseError::Io { action, path, source }
}

/// Checks a release name: lowercase ASCII letters, as Debian's codenames are.
pub fn check_release(release: &str) -> Result<(), ReleaseError> {
    if !release.is_empty() && release.len() <= 32 && release.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(ReleaseError::BadName(release.to_string()))
    }
}

/// Where the root of `release` is kept.
pub fn root_dir(cache: &Path, release: &str) -> PathBuf {
    cache.join("releases").join(release).join("root")
}

/// The packages a root was made with (`name=version`), as its build recorded them.
pub fn root_packages(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join(".layerbench-packages")).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// The root of `release`, made first when missing (about 1.5 minutes: debootstrap, then apt inside it). Two starts
/// at once make it once: the second waits on a lock.
pub fn ensure_root(cache: &Path, release: &str, mirror: &str) -> Result<PathBuf, ReleaseError> {
    check_release(release)?;
    let root = root_dir(cache, release);
    let folder = root.parent().unwrap_or(cache).to_path_buf();
    std::fs::create_dir_all(&folder).map_err(io("create", &folder))?;
    let lock_path = folder.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    // SAFETY: flock on an open descriptor this function owns; released when `lock` is dropped.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err(io("lock", &lock_path)(std::io::Error::last_os_error()));
    }
    if root.join(".layerbench-packages").exists() {
        return Ok(root);
    }
    if Command::new("sh").args(["-c", "command -v debootstrap"]).output().map_or(true, |o| !o.status.success()) {
        return Err(ReleaseError::NoDebootstrap { release: release.to_string() });
    }
    let script = folder.join("build-engine-root.sh");
    std::fs::write(&script, ROOT_SCRIPT).map_err(io("write", &script))?;
    eprintln!("engine: no {release} root yet; making it once from Debian packages under {}", folder.display());
    let status = Command::new("bash").arg(&script).arg(release).arg(&root).arg(mirror).status().map_err(io("run", &script))?;
    if !status.success() {
        return Err(ReleaseError::Build { release: release.to_string(), root, status: status.to_string(), log: folder.join("root.log") });
    }
    Ok(root)
}

/// A command that runs `program args…` from `root` in a mount namespace of its own, with each of `binds` (absolute
/// folders) seen at its own path inside. The process keeps the command's pid through every `exec`.
pub fn command_in_root(root: &Path, binds: &[PathBuf], program: &str, args: &[std::ffi::OsString]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", ENTER_SCRIPT, "sh"])
        .arg(root)
        .arg(binds.len().to_string())
        .args(binds)
        .arg(program)
        .args(args);
    command
}

/// The BuildKit that a Docker release vendors (moby's `vendor.mod`, read for these releases only): Debian's builds do not stamp its version, so
/// the engine itself reports `v0.0.0+unknown` or nothing.
pub fn vendored_buildkit(docker_version: &str) -> Option<&'static str> {
    let mut parts = docker_version.split(['.', '+', '-', '~']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(match (major, minor) {
        (20, 10) => "0.8",
        (25, 0) => "0.12",
        (26, _) => "0.13",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_are_codenames() {
        for good in ["trixie", "bookworm", "sid"] {
            assert!(check_release(good).is_ok(), "{good}");
        }
        for bad in ["", "Trixie", "13", "../x", "tri xie"] {
            assert!(check_release(bad).unwrap_err().to_string().contains(&format!("{bad:?}")), "{bad}");
        }
    }

    #[test]
    fn the_vendored_buildkit_follows_the_docker_release() {
        assert_eq!(vendored_buildkit("20.10.24+dfsg1"), Some("0.8"));
        assert_eq!(vendored_buildkit("26.1.5+dfsg1"), Some("0.13"));
        assert_eq!(vendored_buildkit("27.5.1"), None, "only the releases whose vendor.mod was read");
        assert_eq!(vendored_buildkit("19.03.1"), None);
        assert_eq!(vendored_buildkit("dev"), None);
    }

    #[test]
    fn a_program_of_a_root_runs_in_its_own_mount_namespace_with_the_binds_at_their_own_paths() {
        let command = command_in_root(Path::new("/cache/releases/trixie/root"), &[PathBuf::from("/cache/engines/m")], "dockerd", &["--debug".into()]);
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(command.get_program(), "unshare");
        assert_eq!(args[..4], ["--mount", "--propagation", "private", "--"]);
        assert_eq!(args[args.len() - 5..], ["/cache/releases/trixie/root", "1", "/cache/engines/m", "dockerd", "--debug"]);
    }
}
