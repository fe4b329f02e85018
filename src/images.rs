//! Base images: use what is present, pull only when asked, otherwise build a labelled local stand-in from Debian packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest;

use crate::engine::{Engine, EngineError, KIND_LABEL, MANAGED_LABEL};

pub const GOLANG_IMAGE: &str = "golang:1.23";
pub const RUNTIME_IMAGE: &str = "debian:bookworm-slim";

const STAND_IN_LABEL: &str = "io.layerbench.stand-in";
const STAND_IN_OF_LABEL: &str = "io.layerbench.stand-in.of";
const PACKAGES_LABEL: &str = "io.layerbench.stand-in.packages";
const RECIPE_LABEL: &str = "io.layerbench.stand-in.recipe";
/// The digest of the build-rootfs.sh that made a stand-in: one made by another script is made again.
const SCRIPT_LABEL: &str = "io.layerbench.stand-in.script";

const ROOTFS_SCRIPT: &str = include_str!("../scripts/build-rootfs.sh");

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("building the root filesystem of the {image} stand-in failed ({status}); its log is above{}", log.as_ref().map(|l| format!(" and in {}", l.display())).unwrap_or_default())]
    Rootfs {
        image: String,
        status: String,
        log: Option<PathBuf>,
    },
    #[error("debootstrap is not installed, and {image} is missing: run `apt-get install -y debootstrap` (or `scripts/setup-engine.sh`), or pass --pull on a machine that can reach a registry")]
    NoDebootstrap { image: String },
    #[error("{}", missing_image_message(image, "the engine"))]
    NoStandIn { image: String },
    #[error("the new {image} stand-in does not work: `{check}` exited {code}: {output}; it was removed and nothing was tagged")]
    Broken {
        image: String,
        check: String,
        code: i64,
        output: String,
    },
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub use crate::results::BaseImage;

/// The Go versions Debian 12 ships (bookworm's own and bookworm-backports'): each has a `golang:<v>` stand-in.
pub const GO_VERSIONS: [&str; 4] = ["1.19", "1.21", "1.22", "1.23"];

/// The packages the official `golang:<v>-bookworm` image installs on `debian:bookworm`: those of
/// `buildpack-deps:bookworm-curl`, of `buildpack-deps:bookworm-scm`, and of golang's own Dockerfile (for cgo).
pub const GOLANG_IMAGE_PACKAGES: [&str; 16] = [
    "ca-certificates", "curl", "gnupg", "netbase", "sq", "wget", // bookworm-curl
    "git", "mercurial", "openssh-client", "subversion", "procps", // bookworm-scm
    "g++", "gcc", "libc6-dev", "make", "pkg-config", // golang
];

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A base image layerbench can make from Debian packages when the engine lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandIn {
    /// The name it is made for, as the engine names it (`golang:1.23`, `gcr.io/distroless/base:nonroot`).
    pub name: String,
    /// The name its root filesystem is first tagged with; other names of the same image are tagged onto it.
    pub canonical: String,
    /// Which root filesystem build-rootfs.sh makes for it.
    pub kind: String,
    /// The image's tag where it decides the configuration (`nonroot` runs as 65532).
    tag: String,
}

/// The stand-in for `reference`, when layerbench has one: `golang:<v>` and `golang:<v>-bookworm` for every Go in
/// [`GO_VERSIONS`], `debian:bookworm-slim`, and `gcr.io/distroless/{static,base}[-debian12]:{latest,nonroot}`.
/// A reference pinned by digest has none: no stand-in can have that digest.
pub fn stand_in(reference: &str) -> Option<StandIn> {
    if reference.contains('@') {
        return None;
    }
    let mut repo = reference;
    for prefix in ["docker.io/library/", "index.docker.io/library/", "docker.io/", "library/"] {
        repo = repo.strip_prefix(prefix).unwrap_or(repo);
    }
    let (repo, tag) = match repo.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((r, t)) => (r, t),
        None => (repo, "latest"),
    };
    let make = |canonical: String, kind: &str| StandIn {
        name: format!("{repo}:{tag}"),
        canonical,
        kind: kind.to_string(),
        tag: tag.to_string(),
    };
    match repo {
        "debian" if matches!(tag, "bookworm-slim" | "12-slim") => Some(make(RUNTIME_IMAGE.to_string(), "runtime")),
        "golang" => {
            let go = tag.strip_suffix("-bookworm").unwrap_or(tag);
            GO_VERSIONS.contains(&go).then(|| make(format!("golang:{go}"), &format!("golang-{go}")))
        }
        _ => {
            let flavour = repo.strip_prefix("gcr.io/distroless/")?;
            let kind = match flavour {
                "static" | "static-debian12" => "distroless-static",
                "base" | "base-debian12" => "distroless-base",
                _ => return None,
            };
            let flavour = flavour.trim_end_matches("-debian12");
            matches!(tag, "latest" | "nonroot").then(|| make(format!("gcr.io/distroless/{flavour}-debian12:{tag}"), kind))
        }
    }
}

impl StandIn {
    fn recipe(&self) -> &'static str {
        match self.kind.as_str() {
            "runtime" => "debootstrap --variant=minbase bookworm",
            k if k.starts_with("golang-") => "debootstrap --variant=minbase bookworm (+ bookworm-backports), the golang:<v>-bookworm packages",
            _ => "Debian 12 packages unpacked into an empty root, as distroless assembles them",
        }
    }

    /// The image configuration of the image it replaces; `packages` are the `name=version` lines its root was made of.
    fn changes(&self, packages: &[String]) -> Vec<String> {
        match self.kind.as_str() {
            "runtime" => vec![format!("ENV PATH={SYSTEM_PATH}"), "CMD [\"bash\"]".into()],
            k if k.starts_with("golang-") => {
                let go = &k["golang-".len()..];
                let package = format!("golang-{go}-go=");
                // `1.23.5-1~bpo12+1` is Go 1.23.5.
                let version = packages
                    .iter()
                    .find_map(|p| p.strip_prefix(&package))
                    .map(|v| v.rsplit_once(':').map_or(v, |(_, v)| v).split(['-', '~', '+']).next().unwrap_or(v).to_string())
                    .unwrap_or_else(|| go.to_string());
                vec![
                    format!("ENV GOLANG_VERSION={version}"),
                    "ENV GOTOOLCHAIN=local".into(),
                    "ENV GOPATH=/go".into(),
                    format!("ENV PATH=/go/bin:/usr/local/go/bin:{SYSTEM_PATH}"),
                    "WORKDIR /go".into(),
                    "CMD [\"bash\"]".into(),
                ]
            }
            _ => {
                let mut changes = vec![format!("ENV PATH={SYSTEM_PATH}"), "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into()];
                if self.tag == "nonroot" {
                    changes.extend(["USER 65532".to_string(), "WORKDIR /home/nonroot".to_string()]);
                }
                changes
            }
        }
    }

    /// A command the new image must run, and what its output must hold; distroless has no shell (build-rootfs.sh
    /// checks its files), but `base`'s glibc loader runs.
    fn check(&self) -> Option<(&'static [&'static str], String)> {
        match self.kind.as_str() {
            "runtime" => Some((&["/bin/sh", "-c", "echo runtime-ok"], "runtime-ok".into())),
            k if k.starts_with("golang-") => Some((&["go", "version"], format!("go{}", &k["golang-".len()..]))),
            "distroless-base" => Some((&["/lib64/ld-linux-x86-64.so.2", "--version"], "ld.so".into())),
            _ => None,
        }
    }
}

/// Makes sure `golang:1.23` and `debian:bookworm-slim` exist. A present image
/// is used as it is; `pull` pulls a missing one; otherwise a stand-in is built
/// under `cache`. A stand-in is tagged only after it passed its check.
pub async fn ensure_base_images(engine: &Engine, pull: bool, cache: &Path, mirror: &str) -> Result<Vec<BaseImage>, ImageError> {
    ensure_images(engine, &[GOLANG_IMAGE.to_string(), RUNTIME_IMAGE.to_string()], pull, cache, mirror).await
}

/// What the engine holds under a name.
enum Found {
    /// An image used as it is (kept when an owned engine is emptied, if layerbench made it).
    Usable(BaseImage),
    /// A stand-in an earlier layerbench made (its id), to be made again.
    Outdated(String),
    Missing,
}

async fn find(engine: &Engine, name: &str) -> Result<Found, ImageError> {
    let Some(facts) = engine.image(name).await? else { return Ok(Found::Missing) };
    if outdated_stand_in(&facts.labels) && stand_in(name).is_some() {
        return Ok(Found::Outdated(facts.id));
    }
    if facts.labels.get(STAND_IN_LABEL).is_some_and(|v| v == "true") {
        engine.keep_as_base_image(&facts.id)?;
    }
    Ok(Found::Usable(describe(name, &facts.id, &facts.labels, "present")))
}

/// Makes sure every image of `names` exists: present ones as they are, missing ones pulled (`pull`) or made as a
/// stand-in. A missing image with no stand-in is an error that says how to provide it.
pub async fn ensure_images(engine: &Engine, names: &[String], pull: bool, cache: &Path, mirror: &str) -> Result<Vec<BaseImage>, ImageError> {
    let mut out = Vec::new();
    for name in names {
        match find(engine, name).await? {
            Found::Usable(image) => out.push(image),
            Found::Missing if pull => {
                eprintln!("images: pulling {name}");
                engine.pull(name).await?;
                let facts = engine.image(name).await?.ok_or_else(|| EngineError::BuildFailed {
                    what: name.to_string(),
                    step: "pull".into(),
                    message: "the pull finished but the image is not there".into(),
                })?;
                out.push(describe(name, &facts.id, &facts.labels, "pulled"));
            }
            found => {
                let spec = stand_in(name).ok_or_else(|| ImageError::NoStandIn { image: name.to_string() })?;
                let outdated = if let Found::Outdated(id) = found { Some(id) } else { None };
                out.push(remake(engine, &spec, outdated, cache, mirror).await?);
            }
        }
    }
    Ok(out)
}

/// Makes the stand-ins of the images among `names` that the engine lacks and layerbench can make; present images
/// are described as found. Images with neither are left out: the builds that need them fail before they start.
pub async fn ensure_stand_ins(engine: &Engine, names: &[String], cache: &Path, mirror: &str) -> Result<Vec<BaseImage>, ImageError> {
    let mut out = Vec::new();
    for name in names {
        match (find(engine, name).await?, stand_in(name)) {
            (Found::Usable(image), _) => out.push(image),
            (Found::Outdated(id), Some(spec)) => out.push(remake(engine, &spec, Some(id), cache, mirror).await?),
            (Found::Missing, Some(spec)) => out.push(remake(engine, &spec, None, cache, mirror).await?),
            (_, None) => {}
        }
    }
    Ok(out)
}

/// Why a build cannot start: its base image is missing and layerbench cannot make it.
pub fn missing_image_message(image: &str, engine: &str) -> String {
    format!(
        "the base image {image} is not in engine {engine}, and layerbench has no stand-in for it: load it with `docker load -i FILE` (a `docker save {image}` from a machine that has it), or run `layerbench images --pull {image}` where a registry answers"
    )
}

/// Makes the stand-in `spec`; `outdated` is the id of an earlier layerbench's stand-in under its name, removed once
/// the new one is tagged (kept while a container still uses it).
async fn remake(engine: &Engine, spec: &StandIn, outdated: Option<String>, cache: &Path, mirror: &str) -> Result<BaseImage, ImageError> {
    if outdated.is_some() {
        eprintln!("images: {} is a stand-in made by an earlier layerbench; making it again", spec.name);
    }
    let made = make_stand_in(engine, spec, cache, mirror).await?;
    // An engine layerbench owns keeps it when it is emptied before each cell.
    engine.keep_as_base_image(&made.id)?;
    if let Some(old) = outdated.filter(|old| *old != made.id) {
        let _ = engine.remove_image(&old).await;
    }
    Ok(made)
}

fn script_digest() -> String {
    hex::encode(sha2::Sha256::digest(ROOTFS_SCRIPT.as_bytes()))
}

/// A stand-in made by an earlier build-rootfs.sh: it may lack what today's holds (the golang stand-ins once had
/// no `make`), so it is made again. Images layerbench did not make are never outdated.
fn outdated_stand_in(labels: &BTreeMap<String, String>) -> bool {
    labels.get(STAND_IN_LABEL).is_some_and(|v| v == "true") && labels.get(SCRIPT_LABEL) != Some(&script_digest())
}

fn describe(name: &str, id: &str, labels: &BTreeMap<String, String>, action: &str) -> BaseImage {
    let stand_in = labels.get(STAND_IN_LABEL).is_some_and(|v| v == "true");
    BaseImage {
        name: name.to_string(),
        id: id.to_string(),
        provenance: if stand_in {
            format!("local stand-in ({})", labels.get(RECIPE_LABEL).cloned().unwrap_or_default())
        } else if action == "pulled" {
            "pulled from its registry".to_string()
        } else {
            "as found in the engine (not made by layerbench)".to_string()
        },
        packages: labels
            .get(PACKAGES_LABEL)
            .map(|p| p.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        action: action.to_string(),
    }
}

/// Tags `spec.name` onto its canonical stand-in when the engine has that, or builds the stand-in (from the cached
/// root filesystem when today's script made it) and tags both names once it passed its check.
async fn make_stand_in(engine: &Engine, spec: &StandIn, cache: &Path, mirror: &str) -> Result<BaseImage, ImageError> {
    let canonical = engine.image(&spec.canonical).await?;
    if let Some(facts) = canonical.filter(|f| f.labels.get(STAND_IN_LABEL).is_some_and(|v| v == "true") && !outdated_stand_in(&f.labels)) {
        engine.tag(&facts.id, &spec.name).await?;
        eprintln!("images: tagged the stand-in {} as {}", spec.canonical, spec.name);
        return Ok(describe(&spec.name, &facts.id, &facts.labels, "built"));
    }
    let workdir = cache.join("rootfs");
    let (tar, stamp) = (workdir.join(format!("{}.tar", spec.kind)), workdir.join(format!("{}.recipe", spec.kind)));
    // The root filesystem is kept after its import, so the engines layerbench owns load it in seconds; it is reused
    // only when made by today's script.
    let script_digest = script_digest();
    let cached = tar.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == script_digest);
    if cached {
        eprintln!("images: {} is missing; loading it from the cached root filesystem {}", spec.name, tar.display());
    } else {
        make_rootfs(spec, &workdir, mirror).await?;
        std::fs::write(&stamp, &script_digest).map_err(|source| ImageError::Io {
            action: "write",
            path: stamp.clone(),
            source,
        })?;
    }
    let packages_path = workdir.join(format!("{}.packages", spec.kind));
    let packages = std::fs::read_to_string(&packages_path).map_err(|source| ImageError::Io {
        action: "read",
        path: packages_path.clone(),
        source,
    })?;
    let packages: Vec<String> = packages.split_whitespace().map(str::to_string).collect();
    let mut changes = spec.changes(&packages);
    for (k, v) in [
        (MANAGED_LABEL, "true".to_string()),
        (KIND_LABEL, "base-image".to_string()),
        (STAND_IN_LABEL, "true".to_string()),
        (STAND_IN_OF_LABEL, spec.canonical.clone()),
        (PACKAGES_LABEL, packages.join(" ")),
        (RECIPE_LABEL, spec.recipe().to_string()),
        (SCRIPT_LABEL, script_digest.clone()),
    ] {
        changes.push(format!("LABEL {k}=\"{v}\""));
    }
    eprintln!("images: importing {} into the engine", tar.display());
    let id = engine.import_rootfs(&tar, changes).await?;
    if let Some((check, expect)) = spec.check() {
        let run = engine.run_to_completion(&id, check, "none", Duration::from_secs(120)).await;
        if !matches!(&run, Ok(r) if r.exit_code == 0 && r.output.contains(&expect)) {
            engine.remove_image(&id).await?;
            let _ = std::fs::remove_file(&stamp);
            let (code, output) = match run {
                Ok(r) => (r.exit_code, r.output),
                Err(e) => (-1, e.to_string()),
            };
            return Err(ImageError::Broken {
                image: spec.name.clone(),
                check: check.join(" "),
                code,
                output: output.trim().to_string(),
            });
        }
    }
    for name in [&spec.canonical, &spec.name] {
        engine.tag(&id, name).await?;
    }
    eprintln!("images: tagged {} ({})", spec.name, &id);
    let labels = engine.image(&spec.name).await?.map(|f| f.labels).unwrap_or_default();
    Ok(describe(&spec.name, &id, &labels, "built"))
}

/// Runs the embedded build-rootfs.sh for `spec`'s kind: writes `<kind>.tar` and `<kind>.packages` in `workdir`.
async fn make_rootfs(spec: &StandIn, workdir: &Path, mirror: &str) -> Result<(), ImageError> {
    if which("debootstrap").is_none() {
        return Err(ImageError::NoDebootstrap {
            image: spec.name.to_string(),
        });
    }
    std::fs::create_dir_all(workdir).map_err(|source| ImageError::Io {
        action: "create",
        path: workdir.to_path_buf(),
        source,
    })?;
    let script = workdir.join("build-rootfs.sh");
    std::fs::write(&script, ROOTFS_SCRIPT).map_err(|source| ImageError::Io {
        action: "write",
        path: script.clone(),
        source,
    })?;
    eprintln!("images: {} is missing; building a local stand-in from Debian packages", spec.name);
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(workdir)
        .arg(mirror)
        .arg(&spec.kind)
        .status()
        .await
        .map_err(|source| ImageError::Io {
            action: "run",
            path: script.clone(),
            source,
        })?;
    if !status.success() {
        return Err(ImageError::Rootfs {
            image: spec.name.to_string(),
            status: status.to_string(),
            log: None,
        });
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().ok()?;
    if out.status.success() {
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_answer_to_the_names_of_the_images_they_replace() {
        let golang = stand_in("docker.io/library/golang:1.21-bookworm").unwrap();
        assert_eq!((golang.name.as_str(), golang.canonical.as_str(), golang.kind.as_str()), ("golang:1.21-bookworm", "golang:1.21", "golang-1.21"));
        for go in GO_VERSIONS {
            assert_eq!(stand_in(&format!("golang:{go}")).unwrap().kind, format!("golang-{go}"));
        }
        assert_eq!(stand_in("golang:1.20"), None, "Debian 12 ships no Go 1.20");
        assert_eq!(stand_in("golang:1.23-alpine"), None);
        assert_eq!(stand_in("golang@sha256:0123"), None, "no stand-in has a pinned digest");
        let base = stand_in("gcr.io/distroless/base").unwrap();
        assert_eq!((base.name.as_str(), base.canonical.as_str(), base.kind.as_str()), ("gcr.io/distroless/base:latest", "gcr.io/distroless/base-debian12:latest", "distroless-base"));
        let nonroot = stand_in("gcr.io/distroless/static-debian12:nonroot").unwrap();
        assert_eq!((nonroot.canonical.as_str(), nonroot.kind.as_str()), ("gcr.io/distroless/static-debian12:nonroot", "distroless-static"));
        assert_eq!(stand_in("gcr.io/distroless/static:debug"), None);
        assert_eq!(stand_in("gcr.io/distroless/java17"), None);
        assert_eq!(stand_in("debian:bookworm-slim").unwrap().kind, "runtime");
        assert_eq!(stand_in("registry.local:5000/golang:1.23"), None);
    }

    #[test]
    fn a_golang_stand_in_carries_the_official_images_environment() {
        let spec = stand_in("golang:1.23").unwrap();
        let changes = spec.changes(&["golang-1.23-go=1.23.5-1~bpo12+1".to_string(), "gcc=4:12.2.0-3".to_string()]);
        for want in ["ENV GOLANG_VERSION=1.23.5", "ENV GOTOOLCHAIN=local", "ENV GOPATH=/go", "WORKDIR /go"] {
            assert!(changes.iter().any(|c| c == want), "{want} missing from {changes:?}");
        }
        assert!(changes.iter().any(|c| c.starts_with("ENV PATH=/go/bin:/usr/local/go/bin:")), "{changes:?}");
        let nonroot = stand_in("gcr.io/distroless/base:nonroot").unwrap().changes(&[]);
        assert!(nonroot.contains(&"USER 65532".to_string()) && nonroot.contains(&"WORKDIR /home/nonroot".to_string()), "{nonroot:?}");
        assert!(!stand_in("gcr.io/distroless/base").unwrap().changes(&[]).iter().any(|c| c.starts_with("USER")), "latest runs as root");
    }
}
