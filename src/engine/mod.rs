//! The Docker engine, through bollard (the only module that uses it): connect, build, import, inspect, run, and remove only what layerbench labelled.

mod build;
mod cleanup;
mod containers;
mod images;
pub mod owned;
pub mod release;
mod session;
pub mod stream;

pub use build::{BuildFailure, BuildOutcome, BuildRequest, BuildTimings, ContextSource, StepReport};
pub use cleanup::Emptied;
pub use containers::RunOutcome;
pub use images::ImageFacts;

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::ListImagesOptions;
use bollard::Docker;

use crate::context::{ContextError, DigestCache};
pub use crate::results::{Builder, EngineVersion, Machine};

/// Every image and container layerbench creates carries this label.
pub const MANAGED_LABEL: &str = "io.layerbench.managed";
/// What a managed object is (`base-image`, `build`, `selftest`, ...).
pub const KIND_LABEL: &str = "io.layerbench.kind";
/// The run that made a build's image or a container (its run id): `clean --run ID` removes only those.
pub const RUN_LABEL: &str = "io.layerbench.run";

/// The oldest engine API layerbench works with (Engine 20.10 speaks 1.41).
const MIN_API: (u64, u64) = (1, 41);

/// How long an engine call may take to answer (the head of its answer; streamed bodies have their own limits).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the context's walk may take to report its end once the engine has answered the build.
const WALK_END_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading an exported image may take (a large one streams for seconds, not minutes).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no Docker engine answered at {target}: {source}\nStart one with `scripts/setup-engine.sh` (installs Debian's docker.io and starts dockerd), or point DOCKER_HOST at a running engine.")]
    Unreachable {
        target: String,
        source: bollard::errors::Error,
    },
    #[error("the Docker engine at {target} speaks API {found}, older than the {}.{} layerbench needs; install Engine 20.10 or newer (Debian's docker.io)", MIN_API.0, MIN_API.1)]
    TooOld { target: String, found: String },
    #[error("failed to {action}: {source}")]
    Api {
        action: String,
        source: bollard::errors::Error,
    },
    #[error("building {what} failed at `{step}`: {message}")]
    BuildFailed {
        what: String,
        step: String,
        message: String,
    },
    #[error("failed to read the image {image} as the engine exported it: {source}")]
    Export { image: String, source: std::io::Error },
    #[error("{spec:?} names no engine: {why}. Give the name of an engine layerbench owns (`layerbench engine ls`), a URL (unix:///path, tcp://host:port, http://host:port), or `default`")]
    BadSpec { spec: String, why: String },
    #[error("the engine {name} is not running{detail}: start it with `layerbench engine start --name {name}`")]
    NotRunning { name: String, detail: String },
    #[error("refusing to empty the engine {name}: layerbench empties only engines it owns (`layerbench engine start`); on a shared engine `layerbench clean` removes only what carries its label")]
    NotOwned { name: String },
    #[error(transparent)]
    Owned(#[from] owned::OwnedEngineError),
    #[error("failed to read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the build context of {what} could not be sent: {source}")]
    Context { what: String, source: Box<ContextError> },
    #[error("failed to open a BuildKit session on the engine at {host}: {detail}")]
    Session { host: String, detail: String },
}

fn api(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let action = action.into();
    move |source| EngineError::Api { action, source }
}

/// A connected engine, API version negotiated.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    target: String,
    /// The owned engine's name, the URL as given, or `default`.
    name: String,
    /// The folder of the engines layerbench owns, when this is one of them.
    owned_in: Option<std::path::PathBuf>,
    pub version: EngineVersion,
    /// The run whose id labels the containers this handle creates.
    run: Option<String>,
    /// The engine's address as a URL (`unix://…`, `tcp://…`), for the sessions layerbench opens itself.
    host: String,
    /// Digests of the files sessions sent, kept while their stats stay the same.
    digests: std::sync::Arc<DigestCache>,
}

/// The image store an engine's `DriverStatus` names: `containerd` when its driver type is a containerd snapshotter.
pub fn image_store(driver_status: &[Vec<String>]) -> &'static str {
    let containerd = driver_status.iter().any(|pair| matches!(pair.as_slice(), [key, value] if key == "driver-type" && value.contains("containerd.snapshotter")));
    if containerd {
        "containerd"
    } else {
        "graphdriver"
    }
}

/// Which engine to reach, as `--engine` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineSpec {
    /// `default`: DOCKER_HOST or the default socket.
    Default,
    /// `unix:///path`, `tcp://host:port` or `http://host:port`, as given.
    Url(String),
    /// The name of an engine layerbench owns.
    Owned(String),
}

impl EngineSpec {
    pub fn parse(spec: &str) -> Result<EngineSpec, EngineError> {
        let bad = |why: &str| EngineError::BadSpec { spec: spec.to_string(), why: why.to_string() };
        if spec == "default" {
            return Ok(EngineSpec::Default);
        }
        if let Some((scheme, rest)) = spec.split_once("://") {
            return match scheme {
                "unix" if rest.starts_with('/') => Ok(EngineSpec::Url(spec.to_string())),
                "unix" => Err(bad("a unix URL needs an absolute path (unix:///path)")),
                "tcp" | "http" if !rest.is_empty() && !rest.starts_with('/') => Ok(EngineSpec::Url(spec.to_string())),
                "tcp" | "http" => Err(bad("a tcp or http URL needs a host (tcp://host:port)")),
                _ => Err(bad(&format!("the scheme {scheme}:// is not one layerbench speaks (unix, tcp, http)"))),
            };
        }
        owned::check_name(spec).map_err(|e| bad(&e.to_string()))?;
        Ok(EngineSpec::Owned(spec.to_string()))
    }
}

fn parse_api(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Engine {
    /// Connects through `DOCKER_HOST` or the default socket and negotiates the API version.
    pub async fn connect() -> Result<Engine, EngineError> {
        let target = match std::env::var("DOCKER_HOST") {
            Ok(h) => format!("{h} (from DOCKER_HOST)"),
            Err(_) => "unix:///var/run/docker.sock (the default socket; DOCKER_HOST is not set)".to_string(),
        };
        let docker = Docker::connect_with_defaults().map_err(|source| EngineError::Unreachable { target: target.clone(), source })?;
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        Engine::negotiate(docker, target, host, "default".to_string(), None).await
    }

    /// Connects to the engine `spec` names: an engine layerbench owns (it must be running), a URL
    /// (`unix:///path`, `tcp://host:port`, `http://host:port`), or `default` (as `connect`).
    pub async fn connect_spec(spec: &str) -> Result<Engine, EngineError> {
        match EngineSpec::parse(spec)? {
            EngineSpec::Default => Engine::connect().await,
            EngineSpec::Url(url) => {
                let docker = Docker::connect_with_host(&url).map_err(|source| EngineError::Unreachable { target: url.clone(), source })?;
                Engine::negotiate(docker, url.clone(), url.clone(), url, None).await
            }
            EngineSpec::Owned(name) => {
                let engines = crate::paths::engines_dir();
                let state = owned::read_state(&engines, &name)?;
                let state = match (owned::liveness(state.as_ref()), state) {
                    (owned::Liveness::Running, Some(state)) => state,
                    (liveness, state) => {
                        let detail = match (liveness, state) {
                            (owned::Liveness::StalePid, Some(s)) => format!(" (its dockerd, pid {}, is gone)", s.pid.unwrap_or_default()),
                            (_, Some(_)) => " (stopped, its data root kept)".to_string(),
                            (_, None) => format!(" (layerbench owns no engine of that name under {})", engines.display()),
                        };
                        return Err(EngineError::NotRunning { name, detail });
                    }
                };
                let target = format!("{} (engine {name}, owned by layerbench)", state.docker_host());
                let docker = Docker::connect_with_host(&state.docker_host()).map_err(|source| EngineError::Unreachable { target: target.clone(), source })?;
                Engine::negotiate(docker, target, state.docker_host(), name, Some(engines)).await
            }
        }
    }

    /// Negotiates the API version (every call bounded by `CALL_TIMEOUT`) and checks it is recent enough.
    async fn negotiate(docker: Docker, target: String, host: String, name: String, owned_in: Option<std::path::PathBuf>) -> Result<Engine, EngineError> {
        let unreachable = |source| EngineError::Unreachable {
            target: target.clone(),
            source,
        };
        // Every call gets its answer's head within this; a build's stream is bounded by the run's build timeout,
        // and the streamed bodies read here (an exported image, a copied file) by their own limits.
        let docker = docker.with_timeout(CALL_TIMEOUT);
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| EngineError::Unreachable {
                target: target.clone(),
                source: bollard::errors::Error::RequestTimeoutError,
            })?
            .map_err(unreachable)?;
        let v = docker.version().await.map_err(unreachable)?;
        let api = v.api_version.unwrap_or_default();
        if parse_api(&api).is_none_or(|found| found < MIN_API) {
            return Err(EngineError::TooOld { target, found: api });
        }
        Ok(Engine {
            run: None,
            host,
            digests: Default::default(),
            docker,
            target,
            name,
            owned_in,
            version: EngineVersion {
                engine: v.version.unwrap_or_default(),
                api,
            },
        })
    }

    /// The owned engine's name, the URL as given, or `default`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether layerbench owns this engine (started it with `engine start`), so it may empty it.
    pub fn is_owned(&self) -> bool {
        self.owned_in.is_some()
    }

    /// How many tagged images the engine has.
    pub async fn image_count(&self) -> Result<usize, EngineError> {
        let images = self.docker.list_images(None::<ListImagesOptions>).await.map_err(api(format!("list the images of engine {}", self.name)))?;
        Ok(images.len())
    }

    /// Whether a dockerd answers a ping on the unix socket `socket` within 5 seconds.
    pub async fn answers_at(socket: &Path) -> bool {
        let url = format!("unix://{}", socket.display());
        match Docker::connect_with_host(&url) {
            Ok(docker) => matches!(tokio::time::timeout(Duration::from_secs(5), docker.ping()).await, Ok(Ok(_))),
            Err(_) => false,
        }
    }

    /// What the engine says about its machine.
    pub async fn machine(&self) -> Result<Machine, EngineError> {
        let info = self.docker.info().await.map_err(api("read the engine's system information"))?;
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())))
            .unwrap_or_default();
        Ok(Machine {
            operating_system: info.operating_system.unwrap_or_default(),
            kernel: info.kernel_version.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
            cpus: info.ncpu.unwrap_or_default().max(0) as u32,
            cpu_model,
            memory_bytes: info.mem_total.unwrap_or_default().max(0) as u64,
            image_store: image_store(info.driver_status.as_deref().unwrap_or_default()).to_string(),
            storage_driver: info.driver.unwrap_or_default(),
            cgroup_version: info.cgroup_version.map(|v| v.to_string()).unwrap_or_default(),
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the engine answers a ping within 5 seconds.
    pub async fn answers(&self) -> bool {
        matches!(tokio::time::timeout(Duration::from_secs(5), self.docker.ping()).await, Ok(Ok(_)))
    }

    /// This handle, labelling the containers it creates with the run's id.
    pub fn for_run(&self, run_id: &str) -> Engine {
        Engine { run: Some(run_id.to_string()), ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::EngineSpec;

    #[test]
    fn an_engine_spec_is_default_a_url_or_an_owned_name() {
        assert_eq!(EngineSpec::parse("default").unwrap(), EngineSpec::Default);
        for url in ["unix:///run/x/docker.sock", "tcp://127.0.0.1:2375", "http://localhost:2375"] {
            assert_eq!(EngineSpec::parse(url).unwrap(), EngineSpec::Url(url.to_string()));
        }
        assert_eq!(EngineSpec::parse("private").unwrap(), EngineSpec::Owned("private".into()));
        assert_eq!(EngineSpec::parse("ci-2").unwrap(), EngineSpec::Owned("ci-2".into()));
    }

    #[test]
    fn a_bad_engine_spec_says_what_is_wrong_and_what_is_accepted() {
        for (spec, why) in [
            ("unix://relative.sock", "absolute path"),
            ("tcp://", "needs a host"),
            ("http:///x", "needs a host"),
            ("ssh://host", "ssh://"),
            ("Private", "not an engine name"),
            ("a_b", "not an engine name"),
            ("", "not an engine name"),
        ] {
            let err = EngineSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
            assert!(err.contains(&format!("{spec:?} names no engine")) && err.contains("`default`"), "{spec}: {err}");
        }
    }
}
