//! Builds: sending a context and reading the engine's build stream into step reports.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::stream::{self, BuildStream, StreamItem};
use super::{session, Builder, Engine, EngineError, ImageFacts, KIND_LABEL, MANAGED_LABEL, WALK_END_TIMEOUT};
use crate::context::{session_context, stream_context, ContextError, ContextStream, ContextTransfer, IgnoreDialect, SentContext, SessionContext, WalkEnd};

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
    /// Where the build's time went, phase by phase.
    pub timings: BuildTimings,
}

/// Where one build's time went on the client's side of the engine. The
/// phases `before_request`, `to_first_item`, `stream`, `context_end` and
/// `inspect` follow each other (with the caller's making of the context they
/// are the whole call); `session_open` is part of `before_request`,
/// `context_walk` overlaps the request, and `parsing` is part of `stream`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildTimings {
    /// From the call to sending the request: the options, the session's service.
    pub before_request: Duration,
    /// Opening the BuildKit session (`POST /session` and its upgrade) before
    /// the request; zero for a tar.
    pub session_open: Duration,
    /// From sending the request to the build stream's first item: connecting,
    /// the engine taking the context (a tar) or starting its solve.
    pub to_first_item: Duration,
    /// From the first item to the stream's end: the engine looking up (or
    /// running) each step and exporting the image, as the harness reads it.
    pub stream: Duration,
    /// The part of `stream` the harness spent turning items into step reports.
    pub parsing: Duration,
    /// After the stream: the tar's walk reporting its end, or the session
    /// closed and its log read.
    pub context_end: Duration,
    /// Inspecting the image after the build (zero when the build failed).
    pub inspect: Duration,
    /// The context's own walk: the tar's on its thread, or the session's
    /// listings summed (the engine waits for each).
    pub context_walk: Duration,
    /// DiffCopy calls the engine made on the session (none for a tar).
    pub sync_calls: usize,
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

impl Engine {
    /// Builds an image and reports each Dockerfile step. Progress lines go to
    /// `progress` as steps finish.
    pub async fn build(&self, request: BuildRequest, progress: &mut dyn FnMut(&StepReport)) -> Result<BuildOutcome, EngineError> {
        let started = Instant::now();
        let mut timings = BuildTimings::default();
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
        // The context goes as a tar in the body, or the engine asks the build's session for it (no body). The
        // session is open before the request goes out. (Opened beside the request, as the Docker CLI opens its own,
        // Docker 26 cut the stream of a BuildKit build with a tar that came next; it saved about 1 ms.)
        let (body, mut sent) = match request.context {
            ContextSource::Tar(stream) => {
                let (body, walk) = stream.into_body();
                (body.boxed(), Sent::Walk(walk))
            }
            ContextSource::Session(context) => {
                let files = context.service(self.digests.clone());
                let (name, key) = context.session_name_and_key();
                let id = session_id.clone().unwrap_or_default();
                let opening = Instant::now();
                let session = session::open(&self.host, &self.version.api, &id, &name, &key, files.clone()).await?;
                timings.session_open = opening.elapsed();
                options.remote = Some("client-session".to_string());
                (futures_util::stream::empty().boxed(), Sent::Session(session, files))
            }
        };
        let mut stream = Box::pin(self.docker.build_image(options, None, Some(bollard::body_try_stream(body))));
        let mut steps = BuildStream::default();
        let mut recorder = stream::Recorder::from_env();
        let requested = Instant::now();
        timings.before_request = requested.duration_since(started);
        let mut first_item: Option<Instant> = None;
        while let Some(item) = stream.next().await {
            let parsing = Instant::now();
            if first_item.is_none() {
                first_item = Some(parsing);
            }
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
                    sent.end(&request.what, &mut timings).await?;
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
            timings.parsing += parsing.elapsed();
            if steps.failure().is_some() {
                break;
            }
        }
        let streamed = Instant::now();
        match first_item {
            Some(first) => {
                timings.to_first_item = first.duration_since(requested);
                timings.stream = streamed.duration_since(first);
            }
            None => timings.to_first_item = streamed.duration_since(requested),
        }
        drop(stream);
        let context = sent.end(&request.what, &mut timings).await?;
        timings.context_end = streamed.elapsed();
        if let Some(failure) = steps.failure().cloned() {
            return Ok(BuildOutcome {
                image: None,
                steps: steps.finish(),
                wall: started.elapsed(),
                failure: Some(failure),
                context,
                timings,
            });
        }
        let wall = started.elapsed();
        let inspecting = Instant::now();
        let image = self.image(&request.tag).await?;
        timings.inspect = inspecting.elapsed();
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
            timings,
        })
    }
}

/// What a build's context sent, known at the build's end: an error when the
/// walk failed (the engine saw a cut body, not a whole context), `None` when
/// the engine stopped reading before the end or the walk does not report in time.
enum Sent {
    /// A tar's walk, which ends on its own thread.
    Walk(WalkEnd),
    /// A session, and the service that answers the engine's requests.
    Session(session::Session, crate::context::FileSyncService),
    /// Already ended.
    Done,
}

impl Sent {
    /// What was sent (`None` when the engine stopped reading a tar before its end), or the error that stopped it;
    /// the walk's time and the session's calls go to `timings`.
    async fn end(&mut self, what: &str, timings: &mut BuildTimings) -> Result<Option<SentContext>, EngineError> {
        let failed = |source| EngineError::Context { what: what.to_string(), source: Box::new(source) };
        match std::mem::replace(self, Sent::Done) {
            Sent::Walk(walk) => match tokio::time::timeout(WALK_END_TIMEOUT, walk.timed()).await {
                Ok((result, took)) => {
                    timings.context_walk = took.unwrap_or_default();
                    match result {
                        Ok(sent) => Ok(Some(sent)),
                        Err(ContextError::NotRead(_)) => Ok(None),
                        Err(source) => Err(failed(source)),
                    }
                }
                Err(_) => Ok(None),
            },
            Sent::Session(session, files) => {
                drop(session);
                let log = files.log();
                timings.sync_calls = log.calls.len();
                timings.context_walk = log.calls.iter().map(|c| c.listing).sum();
                Ok(Some(log.sent_context(&files.digests_handle())))
            }
            Sent::Done => Ok(None),
        }
    }
}

fn ts_ms(seconds: i64, nanos: i32) -> u64 {
    (seconds.max(0) as u64) * 1000 + (nanos.max(0) as u64) / 1_000_000
}
