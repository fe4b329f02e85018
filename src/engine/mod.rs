//! The Docker engine, through bollard (the only module that uses it): connect, build, import, inspect, run, and remove only what layerbench labelled.

pub mod owned;
pub mod release;
mod session;
pub mod stream;

use stream::{BuildStream, StreamItem};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{BuildInfoAux, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptions, BuilderVersion, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    ListImagesOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions, TagImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::context::{session_context, stream_context, ContextError, ContextStream, ContextTransfer, DigestCache, IgnoreDialect, SentContext, SessionContext, WalkEnd};
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

/// Facts about an image present in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    pub id: String,
    pub size_bytes: u64,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    pub layers: usize,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` lines of the image's configuration.
    pub env: Vec<String>,
    pub working_dir: String,
}

/// A build to run.
#[derive(Debug)]
pub struct BuildRequest {
    /// Names the build in errors and progress (for example `sample (layered)`).
    pub what: String,
    /// The context, and how it reaches the engine; it names the Dockerfile and the builder.
    pub context: ContextSource,
    pub tag: String,
    /// The stage to build; the last one when absent.
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `host` lets a build reach the module proxy on loopback.
    pub network_mode: String,
    /// Ignore the build cache for every step.
    pub no_cache: bool,
}

/// How a build's context reaches the engine.
#[derive(Debug)]
pub enum ContextSource {
    /// A tar in the build request's body, streamed as it is read (the legacy
    /// builder's only way; BuildKit's with `--context-transfer tar`).
    Tar(ContextStream),
    /// Through the build's session, what the engine asks for, as the Docker
    /// CLI sends a folder to BuildKit.
    Session(SessionContext),
}

impl ContextSource {
    /// The context of `context_dir` with `dockerfile` (absolute, or relative to
    /// it) as `builder` gets it by `transfer`, with the `.dockerignore` rules of
    /// `dialect` (the engine's: `IgnoreDialect::of_engine`).
    pub fn new(context_dir: &Path, dockerfile: &Path, builder: Builder, dialect: IgnoreDialect, transfer: ContextTransfer) -> Result<ContextSource, ContextError> {
        match (builder, transfer) {
            (Builder::Buildkit, ContextTransfer::Session) => session_context(context_dir, dockerfile, dialect).map(ContextSource::Session),
            _ => stream_context(context_dir, dockerfile, builder, dialect).map(ContextSource::Tar),
        }
    }

    pub fn builder(&self) -> Builder {
        match self {
            ContextSource::Tar(stream) => stream.builder(),
            ContextSource::Session(_) => Builder::Buildkit,
        }
    }

    /// The name to pass as the build's `dockerfile` option.
    pub fn dockerfile(&self) -> &str {
        match self {
            ContextSource::Tar(stream) => stream.dockerfile(),
            ContextSource::Session(session) => session.dockerfile(),
        }
    }
}

/// One Dockerfile step as the builder reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    pub cached: bool,
    /// Milliseconds since the Unix epoch: daemon-side (BuildKit) or arrival at the client (legacy).
    pub started_unix_ms: Option<u64>,
    pub completed_unix_ms: Option<u64>,
    pub error: Option<String>,
}

/// What a build produced: an image, or the step that failed and why.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub image: Option<ImageFacts>,
    pub steps: Vec<StepReport>,
    pub wall: Duration,
    pub failure: Option<BuildFailure>,
    /// What the context sent, path by path (`None` when the engine stopped reading it before its end).
    pub context: Option<SentContext>,
}

/// A build that the builder ended with an error (the engine itself worked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFailure {
    pub step: String,
    pub message: String,
    /// The failing step's own output, its last lines (`stream::ERROR_LOG_LINES`).
    pub log: Vec<String>,
}

impl BuildOutcome {
    /// The image, or the build failure as an error naming what was built.
    pub fn into_image(self, what: &str) -> Result<(ImageFacts, Vec<StepReport>, Duration), EngineError> {
        match (self.image, self.failure) {
            (Some(image), None) => Ok((image, self.steps, self.wall)),
            (_, Some(f)) => Err(EngineError::BuildFailed {
                what: what.to_string(),
                step: f.step,
                message: f.message,
            }),
            (None, None) => Err(EngineError::BuildFailed {
                what: what.to_string(),
                step: "(end of build)".into(),
                message: "no image was produced".into(),
            }),
        }
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

/// What `Engine::empty` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emptied {
    pub containers: usize,
    pub images: usize,
    /// Build cache records (BuildKit's) pruned.
    pub cache_records: usize,
    pub cache_bytes: u64,
    /// The base images left in place.
    pub kept_images: usize,
}

/// A container run to completion.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i64,
    pub output: String,
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

    /// On an engine layerbench owns, adds the image `id` to the base images [`Engine::empty`] keeps (a stand-in made
    /// after `engine start`); elsewhere nothing.
    pub fn keep_as_base_image(&self, id: &str) -> Result<(), EngineError> {
        match &self.owned_in {
            Some(engines) => Ok(owned::add_base_image(engines, &self.name, id)?),
            None => Ok(()),
        }
    }

    /// Empties an engine layerbench owns to how `engine start` left it: every container, every image but the base
    /// images loaded into it, and the whole build cache. Refused on any other engine.
    pub async fn empty(&self) -> Result<Emptied, EngineError> {
        let Some(engines) = &self.owned_in else {
            return Err(EngineError::NotOwned { name: self.name.clone() });
        };
        let keep: Vec<String> = owned::read_state(engines, &self.name)?.map(|s| s.base_images).unwrap_or_default();
        // By the ids `engine start` recorded; without them, tagged images labelled as base images. (The label alone
        // is not enough: the legacy builder's intermediate images inherit it from the base image.)
        let is_base = |image: &bollard::models::ImageSummary| {
            if keep.is_empty() {
                image.labels.get(KIND_LABEL).is_some_and(|k| k == "base-image") && image.repo_tags.iter().any(|t| !t.starts_with("<none>"))
            } else {
                keep.contains(&image.id)
            }
        };
        let mut emptied = Emptied::default();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions { all: true, ..Default::default() }))
            .await
            .map_err(api(format!("list the containers of engine {}", self.name)))?;
        for c in containers {
            if let Some(id) = c.id {
                self.remove_container(&id).await?;
                emptied.containers += 1;
            }
        }
        // Images built on others go first; what still has children is retried once they are gone.
        loop {
            let images = self
                .docker
                .list_images(Some(ListImagesOptions { all: true, ..Default::default() }))
                .await
                .map_err(api(format!("list the images of engine {}", self.name)))?;
            let (kept, doomed): (Vec<_>, Vec<_>) = images.into_iter().partition(|i| is_base(i));
            emptied.kept_images = kept.len();
            if doomed.is_empty() {
                break;
            }
            let mut progress = false;
            for image in doomed {
                let options = RemoveImageOptions { force: true, ..Default::default() };
                match self.docker.remove_image(&image.id, Some(options), None).await {
                    Ok(_) => {
                        emptied.images += 1;
                        progress = true;
                    }
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
                    Err(source) => return Err(EngineError::Api { action: format!("remove image {} from engine {}", image.id, self.name), source }),
                }
            }
            if !progress {
                return Err(EngineError::Api {
                    action: format!("empty engine {}", self.name),
                    source: bollard::errors::Error::DockerStreamError { error: "some images could not be removed (still in use)".into() },
                });
            }
        }
        let options = bollard::query_parameters::PruneBuildOptions { all: Some(true), ..Default::default() };
        let pruned = self
            .docker
            .prune_build(Some(options))
            .await
            .map_err(api(format!("prune the build cache of engine {}", self.name)))?;
        emptied.cache_records = pruned.caches_deleted.map_or(0, |c| c.len());
        emptied.cache_bytes = pruned.space_reclaimed.unwrap_or(0).max(0) as u64;
        Ok(emptied)
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

    /// The image's facts, or `None` when no image has that name or id.
    pub async fn image(&self, name: &str) -> Result<Option<ImageFacts>, EngineError> {
        match self.docker.inspect_image(name).await {
            Ok(i) => {
                let config = i.config.unwrap_or_default();
                Ok(Some(ImageFacts {
                    id: i.id.unwrap_or_default(),
                    size_bytes: i.size.unwrap_or(0).max(0) as u64,
                    labels: config.labels.unwrap_or_default().into_iter().collect(),
                    user: config.user.unwrap_or_default(),
                    entrypoint: config.entrypoint.unwrap_or_default(),
                    cmd: config.cmd.unwrap_or_default(),
                    env: config.env.unwrap_or_default(),
                    working_dir: config.working_dir.unwrap_or_default(),
                    layers: i.root_fs.and_then(|r| r.layers).map_or(0, |l| l.len()),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(source) => Err(EngineError::Api {
                action: format!("inspect image {name}"),
                source,
            }),
        }
    }

    /// The id of the image `name` refers to, or `None` when the engine has no such image.
    pub async fn image_id(&self, name: &str) -> Result<Option<String>, EngineError> {
        Ok(self.image(name).await?.map(|i| i.id))
    }

    /// Pulls an image from its registry (only on an explicit request).
    pub async fn pull(&self, name: &str) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(name.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(api(format!("pull {name}")))?;
        }
        Ok(())
    }

    /// Imports a root-filesystem tar as a new, untagged image with the given
    /// Dockerfile-style `changes` (ENV, WORKDIR, LABEL, ...); returns its id.
    pub async fn import_rootfs(&self, tar: &Path, changes: Vec<String>) -> Result<String, EngineError> {
        let file = tokio::fs::File::open(tar).await.map_err(|source| EngineError::Io {
            path: tar.to_path_buf(),
            source,
        })?;
        let stream = tokio_util_stream(file);
        let options = CreateImageOptions {
            from_src: Some("-".to_string()),
            changes,
            ..Default::default()
        };
        let action = format!("import {}", tar.display());
        let mut out = self
            .docker
            .create_image(Some(options), Some(bollard::body_stream(stream)), None);
        let mut id = None;
        while let Some(item) = out.next().await {
            let info = item.map_err(api(action.clone()))?;
            if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
                id = Some(status);
            }
        }
        id.ok_or_else(|| EngineError::Api {
            action,
            source: bollard::errors::Error::DockerStreamError {
                error: "the engine did not report the new image's id".into(),
            },
        })
    }

    pub async fn tag(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
        let options = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(api(format!("tag {id} as {name}")))
    }

    pub async fn remove_image(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_image(name, Some(options), None).await {
            Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(source) => Err(EngineError::Api {
                action: format!("remove image {name}"),
                source,
            }),
        }
    }

    /// Builds an image and reports each Dockerfile step. Progress lines go to
    /// `progress` as steps finish.
    pub async fn build(&self, request: BuildRequest, progress: &mut dyn FnMut(&StepReport)) -> Result<BuildOutcome, EngineError> {
        let started = Instant::now();
        let builder = request.context.builder();
        let mut labels: HashMap<String, String> = request.labels.clone().into_iter().collect();
        labels.entry(MANAGED_LABEL.to_string()).or_insert_with(|| "true".into());
        labels.entry(KIND_LABEL.to_string()).or_insert_with(|| "build".into());
        let session_id = match builder {
            Builder::Buildkit => Some(format!("layerbench-{}-{}", std::process::id(), crate::results::unix_ms_now())),
            Builder::Legacy => None,
        };
        let mut options = BuildImageOptions {
            dockerfile: request.context.dockerfile().to_string(),
            t: Some(request.tag.clone()),
            target: request.target.clone().unwrap_or_default(),
            rm: true,
            forcerm: true,
            nocache: request.no_cache,
            buildargs: Some(request.build_args.clone().into_iter().collect()),
            labels: Some(labels),
            networkmode: Some(request.network_mode.clone()),
            version: match builder {
                Builder::Buildkit => BuilderVersion::BuilderBuildKit,
                Builder::Legacy => BuilderVersion::BuilderV1,
            },
            session: session_id.clone(),
            ..Default::default()
        };
        // The context goes as a tar in the body, or the engine asks the build's session for it (no body).
        let (body, mut sent) = match request.context {
            ContextSource::Tar(stream) => {
                let (body, walk) = stream.into_body();
                (body.boxed(), Sent::Walk(walk))
            }
            ContextSource::Session(context) => {
                let files = context.service(self.digests.clone());
                let (name, key) = context.session_name_and_key();
                let id = session_id.clone().unwrap_or_default();
                let session = session::open(&self.host, &self.version.api, &id, &name, &key, files.clone()).await?;
                options.remote = Some("client-session".to_string());
                (futures_util::stream::empty().boxed(), Sent::Session(session, files))
            }
        };
        let mut stream = Box::pin(self.docker.build_image(options, None, Some(bollard::body_try_stream(body))));
        let mut steps = BuildStream::default();
        let mut recorder = stream::Recorder::from_env();
        while let Some(item) = stream.next().await {
            let items: Vec<StreamItem> = match item {
                Ok(info) => {
                    let mut items = Vec::new();
                    if let Some(BuildInfoAux::BuildKit(status)) = info.aux.as_ref() {
                        for v in &status.vertexes {
                            items.push(StreamItem::Vertex {
                                digest: v.digest.clone(),
                                name: v.name.clone(),
                                cached: v.cached,
                                started_unix_ms: v.started.as_ref().map(|t| ts_ms(t.seconds, t.nanos)),
                                completed_unix_ms: v.completed.as_ref().map(|t| ts_ms(t.seconds, t.nanos)),
                                error: v.error.clone(),
                            });
                        }
                        for log in &status.logs {
                            items.push(StreamItem::Log {
                                digest: log.vertex.clone(),
                                data: String::from_utf8_lossy(&log.msg).into_owned(),
                            });
                        }
                    }
                    if let Some(text) = &info.stream {
                        items.push(StreamItem::Text { text: text.clone(), at_unix_ms: crate::results::unix_ms_now() });
                    }
                    items
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => vec![StreamItem::Error { message: error }],
                Err(source) => {
                    // A context that could not be read is the cause, not the connection it cut.
                    drop(stream);
                    sent.end(&request.what).await?;
                    return Err(EngineError::Api {
                        action: format!("build {}", request.what),
                        source,
                    });
                }
            };
            for item in items {
                recorder.record(&item);
                steps.push(&item, progress);
            }
            if steps.failure().is_some() {
                break;
            }
        }
        drop(stream);
        let context = sent.end(&request.what).await?;
        if let Some(failure) = steps.failure().cloned() {
            return Ok(BuildOutcome {
                image: None,
                steps: steps.finish(),
                wall: started.elapsed(),
                failure: Some(failure),
                context,
            });
        }
        let wall = started.elapsed();
        let image = self.image(&request.tag).await?;
        let failure = match image {
            Some(_) => None,
            None => Some(BuildFailure {
                step: "(end of build)".into(),
                message: format!("the engine reported success but no image {} exists", request.tag),
                log: Vec::new(),
            }),
        };
        Ok(BuildOutcome {
            image,
            steps: steps.finish(),
            wall,
            failure,
            context,
        })
    }

    /// Runs `image` with `cmd` to completion in a labelled container with the
    /// given network mode, collects its output and removes it.
    pub async fn run_to_completion(
        &self,
        image: &str,
        cmd: &[&str],
        network_mode: &str,
        timeout: Duration,
    ) -> Result<RunOutcome, EngineError> {
        let cmd = (!cmd.is_empty()).then(|| cmd.iter().map(|s| s.to_string()).collect());
        let id = self.create_labelled_container(image, cmd, network_mode).await?;
        let result = self.start_and_wait(&id, image, timeout).await;
        let removed = self.remove_container(&id).await;
        let outcome = result?;
        removed?;
        Ok(outcome)
    }

    /// The image's history, oldest first: what created each entry and the bytes it added (0 for metadata-only entries).
    pub async fn layer_sizes(&self, image: &str) -> Result<Vec<(String, u64)>, EngineError> {
        let history = self.docker.image_history(image).await.map_err(api(format!("read the history of {image}")))?;
        Ok(history
            .into_iter()
            .rev()
            .map(|h| (h.created_by, h.size.max(0) as u64))
            .collect())
    }

    /// Reads one file out of an image, without running anything: a container
    /// is created (labelled, never started), the file is copied out, and the
    /// container is removed. `None` when the image has no such file.
    pub async fn read_file_from_image(&self, image: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
        // Scratch images have no default command; this one is never run.
        let id = self.create_labelled_container(image, Some(vec!["/layerbench-never-run".to_string()]), "none").await?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(&id, Some(options));
        let mut tar_bytes = Vec::new();
        let mut missing = false;
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next()).await.unwrap_or_else(|_| {
            Some(Err(bollard::errors::Error::IOError { err: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("copying {path} out took over {} s", CALL_TIMEOUT.as_secs())) }))
        }) {
            match chunk {
                Ok(b) => tar_bytes.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                    missing = true;
                    break;
                }
                Err(source) => {
                    let _ = self.remove_container(&id).await;
                    return Err(EngineError::Api {
                        action: format!("copy {path} out of {image}"),
                        source,
                    });
                }
            }
        }
        self.remove_container(&id).await?;
        if missing {
            return Ok(None);
        }
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let entries = archive.entries().map_err(|source| EngineError::Io {
            path: path.into(),
            source,
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| EngineError::Io { path: path.into(), source })?;
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(|source| EngineError::Io { path: path.into(), source })?;
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Streams an image as `docker save` writes it (a tar of its config, its layers' tars and a manifest) into `read`,
    /// which runs on a blocking thread: the image is never held in memory or on disk whole.
    pub async fn read_saved_image<T: Send + 'static>(
        &self,
        image: &str,
        read: impl FnOnce(&mut dyn std::io::Read) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, EngineError> {
        let docker = self.docker.clone();
        let name = image.to_string();
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            let saved = docker.export_image(&name).map(|chunk| chunk.map_err(std::io::Error::other));
            let mut bridge = tokio_util::io::SyncIoBridge::new_with_handle(tokio_util::io::StreamReader::new(Box::pin(saved)), runtime);
            read(&mut bridge)
        });
        let export = |source| EngineError::Export { image: image.to_string(), source };
        let finished = tokio::time::timeout(EXPORT_TIMEOUT, task)
            .await
            .map_err(|_| export(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no end after {} s", EXPORT_TIMEOUT.as_secs()))))?;
        finished.map_err(|e| export(std::io::Error::other(e)))?.map_err(export)
    }

    /// Creates (does not start) a container carrying layerbench's label; returns its id.
    async fn create_labelled_container(&self, image: &str, cmd: Option<Vec<String>>, network_mode: &str) -> Result<String, EngineError> {
        let mut labels = HashMap::new();
        labels.insert(MANAGED_LABEL.to_string(), "true".to_string());
        labels.insert(KIND_LABEL.to_string(), "run".to_string());
        if let Some(run) = &self.run {
            labels.insert(RUN_LABEL.to_string(), run.clone());
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd,
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(network_mode.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(api(format!("create a container from {image}")))?;
        Ok(created.id)
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(api(format!("remove container {id}")))
    }

    async fn start_and_wait(&self, id: &str, image: &str, timeout: Duration) -> Result<RunOutcome, EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(api(format!("start a container from {image}")))?;
        let mut wait = self.docker.wait_container(id, None);
        let exit_code = match tokio::time::timeout(timeout, wait.next()).await {
            Err(_) => {
                return Err(EngineError::Api {
                    action: format!("wait for the container from {image} (gave up after {timeout:?})"),
                    source: bollard::errors::Error::RequestTimeoutError,
                })
            }
            Ok(Some(Ok(r))) => r.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(source))) => {
                return Err(EngineError::Api {
                    action: format!("wait for the container from {image}"),
                    source,
                })
            }
            Ok(None) => -1,
        };
        let mut logs = self.docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        );
        let mut output = String::new();
        while let Some(item) = logs.next().await {
            let chunk = item.map_err(api(format!("read the logs of the container from {image}")))?;
            output.push_str(&chunk.to_string());
        }
        Ok(RunOutcome { exit_code, output })
    }

    /// Removes dangling images that carry layerbench's label (old builds of a
    /// re-used tag, the legacy builder's stage images), only this handle's run's when it has one; returns how many.
    pub async fn prune_dangling(&self) -> Result<usize, EngineError> {
        let mut filters = HashMap::new();
        filters.insert("dangling".to_string(), vec!["true".to_string()]);
        let mut labels = vec![format!("{MANAGED_LABEL}=true")];
        labels.extend(self.run.as_ref().map(|id| format!("{RUN_LABEL}={id}")));
        filters.insert("label".to_string(), labels);
        let options = bollard::query_parameters::PruneImagesOptions { filters: Some(filters) };
        let pruned = self
            .docker
            .prune_images(Some(options))
            .await
            .map_err(api("prune layerbench's dangling images"))?;
        Ok(pruned.images_deleted.map_or(0, |d| d.len()))
    }

    /// Whether the engine answers a ping within 5 seconds.
    pub async fn answers(&self) -> bool {
        matches!(tokio::time::timeout(Duration::from_secs(5), self.docker.ping()).await, Ok(Ok(_)))
    }

    /// This handle, labelling the containers it creates with the run's id.
    pub fn for_run(&self, run_id: &str) -> Engine {
        Engine { run: Some(run_id.to_string()), ..self.clone() }
    }

    /// Removes every container and image that carries layerbench's label (and
    /// `kind` among `kinds`, and the run's id, when given); nothing else is touched. Returns what was removed.
    pub async fn remove_labelled(&self, kinds: Option<&[&str]>, run: Option<&str>) -> Result<Vec<String>, EngineError> {
        let mut filters = HashMap::new();
        let mut labels = vec![format!("{MANAGED_LABEL}=true")];
        labels.extend(run.map(|id| format!("{RUN_LABEL}={id}")));
        filters.insert("label".to_string(), labels);
        let wanted = |labels: Option<&HashMap<String, String>>| match (kinds, labels) {
            (None, _) => true,
            (Some(kinds), Some(l)) => l.get(KIND_LABEL).is_some_and(|k| kinds.contains(&k.as_str())),
            (Some(_), None) => false,
        };
        let mut removed = Vec::new();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(api("list layerbench's containers"))?;
        for c in containers {
            if !wanted(c.labels.as_ref()) {
                continue;
            }
            let id = c.id.unwrap_or_default();
            self.remove_container(&id).await?;
            removed.push(format!("container {id}"));
        }
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("list layerbench's images"))?;
        // Tagged images first: removing one also removes its untagged parents
        // that nothing else uses. An image that still has children (the
        // legacy builder chains its LABEL steps) is retried after the others.
        let mut pending: Vec<(String, String)> = images
            .into_iter()
            .filter(|i| wanted(Some(&i.labels)))
            .map(|i| {
                let tag = i.repo_tags.iter().find(|t| !t.starts_with("<none>")).cloned();
                (tag.unwrap_or_default(), i.id)
            })
            .collect();
        pending.sort_by_key(|(tag, _)| tag.is_empty());
        loop {
            let mut progress = false;
            let mut still = Vec::new();
            for (tag, id) in pending {
                let options = RemoveImageOptions {
                    force: true,
                    ..Default::default()
                };
                match self.docker.remove_image(&id, Some(options), None).await {
                    Ok(_) => {
                        removed.push(format!("image {}", if tag.is_empty() { &id } else { &tag }));
                        progress = true;
                    }
                    // Already gone with a child that was removed before it.
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => progress = true,
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => still.push((tag, id)),
                    Err(source) => {
                        return Err(EngineError::Api {
                            action: format!("remove image {id}"),
                            source,
                        })
                    }
                }
            }
            pending = still;
            if pending.is_empty() || !progress {
                break;
            }
        }
        for (tag, id) in pending {
            removed.push(format!("kept image {} (other images are built on it)", if tag.is_empty() { id } else { tag }));
        }
        Ok(removed)
    }
}

/// What the context's walk sent once the build's answer has ended: an error
/// when the walk failed (the engine saw a cut body, not a whole context), `None`
/// when the engine stopped reading before the end or the walk does not report in time.
/// What a build's context sent, known at the build's end.
enum Sent {
    /// A tar's walk, which ends on its own thread.
    Walk(WalkEnd),
    /// A session, and the service that answered the engine's requests.
    Session(session::Session, crate::context::FileSyncService),
    /// Already ended.
    Done,
}

impl Sent {
    /// What was sent (`None` when the engine stopped reading a tar before its end), or the error that stopped it.
    async fn end(&mut self, what: &str) -> Result<Option<SentContext>, EngineError> {
        let failed = |source| EngineError::Context { what: what.to_string(), source: Box::new(source) };
        match std::mem::replace(self, Sent::Done) {
            Sent::Walk(walk) => match tokio::time::timeout(WALK_END_TIMEOUT, walk.sent()).await {
                Ok(Ok(sent)) => Ok(Some(sent)),
                Ok(Err(ContextError::NotRead(_))) | Err(_) => Ok(None),
                Ok(Err(source)) => Err(failed(source)),
            },
            Sent::Session(session, files) => {
                drop(session);
                Ok(Some(files.log().sent_context(&files.digests_handle())))
            }
            Sent::Done => Ok(None),
        }
    }
}

fn ts_ms(seconds: i64, nanos: i32) -> u64 {
    (seconds.max(0) as u64) * 1000 + (nanos.max(0) as u64) / 1_000_000
}

fn tokio_util_stream(file: tokio::fs::File) -> impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((bytes::Bytes::from(buf), file))
            }
        }
    })
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
