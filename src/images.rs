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

struct Spec {
    name: &'static str,
    kind: &'static str,
    changes: &'static [&'static str],
    check: &'static [&'static str],
    expect: &'static str,
}

const SPECS: [Spec; 2] = [
    Spec {
        name: RUNTIME_IMAGE,
        kind: "runtime",
        changes: &[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "CMD [\"bash\"]",
        ],
        check: &["/bin/sh", "-c", "echo runtime-ok"],
        expect: "runtime-ok",
    },
    Spec {
        name: GOLANG_IMAGE,
        kind: "golang",
        changes: &[
            "ENV PATH=/go/bin:/usr/lib/go-1.23/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV GOPATH=/go",
            "ENV GOTOOLCHAIN=local",
            "WORKDIR /go",
            "CMD [\"bash\"]",
        ],
        check: &["go", "version"],
        expect: "go1.23",
    },
];

/// Makes sure `golang:1.23` and `debian:bookworm-slim` exist. A present image
/// is used as it is; `pull` pulls a missing one; otherwise a stand-in is built
/// under `cache`. A stand-in is tagged only after it passed its check.
pub async fn ensure_base_images(engine: &Engine, pull: bool, cache: &Path, mirror: &str) -> Result<Vec<BaseImage>, ImageError> {
    let mut out = Vec::new();
    for spec in &SPECS {
        if let Some(facts) = engine.image(spec.name).await? {
            out.push(describe(spec.name, &facts.id, &facts.labels, "present"));
            continue;
        }
        if pull {
            eprintln!("images: pulling {}", spec.name);
            engine.pull(spec.name).await?;
            let facts = engine.image(spec.name).await?.ok_or_else(|| EngineError::BuildFailed {
                what: spec.name.to_string(),
                step: "pull".into(),
                message: "the pull finished but the image is not there".into(),
            })?;
            out.push(describe(spec.name, &facts.id, &facts.labels, "pulled"));
            continue;
        }
        out.push(build_stand_in(engine, spec, cache, mirror).await?);
    }
    Ok(out)
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

async fn build_stand_in(engine: &Engine, spec: &Spec, cache: &Path, mirror: &str) -> Result<BaseImage, ImageError> {
    let workdir = cache.join("rootfs");
    let (tar, stamp) = (workdir.join(format!("{}.tar", spec.kind)), workdir.join(format!("{}.recipe", spec.kind)));
    // The root filesystem is kept after its import, so the engines layerbench owns load it in seconds; it is reused
    // only when made by today's script.
    let script_digest = format!("{:x}", sha2::Sha256::digest(ROOTFS_SCRIPT.as_bytes()));
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
    let recipe = match spec.kind {
        "golang" => "debootstrap --variant=minbase bookworm + bookworm-backports",
        _ => "debootstrap --variant=minbase bookworm",
    };
    let mut changes: Vec<String> = spec.changes.iter().map(|s| s.to_string()).collect();
    for (k, v) in [
        (MANAGED_LABEL, "true".to_string()),
        (KIND_LABEL, "base-image".to_string()),
        (STAND_IN_LABEL, "true".to_string()),
        (STAND_IN_OF_LABEL, spec.name.to_string()),
        (PACKAGES_LABEL, packages.join(" ")),
        (RECIPE_LABEL, recipe.to_string()),
    ] {
        changes.push(format!("LABEL {k}=\"{v}\""));
    }
    eprintln!("images: importing {} into the engine", tar.display());
    let id = engine.import_rootfs(&tar, changes).await?;
    let run = engine
        .run_to_completion(&id, spec.check, "none", Duration::from_secs(120))
        .await;
    let ok = matches!(&run, Ok(r) if r.exit_code == 0 && r.output.contains(spec.expect));
    if !ok {
        engine.remove_image(&id).await?;
        let _ = std::fs::remove_file(&stamp);
        let (code, output) = match run {
            Ok(r) => (r.exit_code, r.output),
            Err(e) => (-1, e.to_string()),
        };
        return Err(ImageError::Broken {
            image: spec.name.to_string(),
            check: spec.check.join(" "),
            code,
            output: output.trim().to_string(),
        });
    }
    engine.tag(&id, spec.name).await?;
    eprintln!("images: tagged {} ({})", spec.name, &id);
    let labels = engine.image(spec.name).await?.map(|f| f.labels).unwrap_or_default();
    Ok(describe(spec.name, &id, &labels, "built"))
}

/// Runs the embedded build-rootfs.sh for `spec`'s kind: writes `<kind>.tar` and `<kind>.packages` in `workdir`.
async fn make_rootfs(spec: &Spec, workdir: &Path, mirror: &str) -> Result<(), ImageError> {
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
        .arg(spec.kind)
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
