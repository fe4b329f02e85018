//! The results file: a versioned record of every build of a run, written after each build so an interrupted run keeps what it measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when a name in the schema changes meaning or disappears (adding fields keeps it).
/// Version 2: a layer's `instruction` is the Dockerfile text as written (both builders), with its `line` and the builder's own `vertex` label.
/// Version 3: a record's `cache_state` says what that build started from (`cold`, `warm` or `rebuild`); before, every record copied the run's option.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("failed to write results to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to read results {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a layerbench results file: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Everything a run measured, with the provenance needed to trust it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub schema_version: u32,
    pub run_id: String,
    pub harness_version: String,
    /// The layerbench source commit, when it was built from a git checkout.
    pub git_commit: Option<String>,
    pub started_unix_ms: u64,
    pub engine: EngineVersion,
    /// The machine the builds ran on (absent in files written before it was recorded).
    #[serde(default)]
    pub machine: Option<Machine>,
    pub base_images: Vec<BaseImage>,
    pub store: StoreProvenance,
    pub app: String,
    pub options: RunOptions,
    /// `true` once the run finished every cell; `false` while running or after an interruption.
    pub complete: bool,
    /// The engines the cells ran on (absent in files written before runs could use several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineUse>,
    /// The share of the run's cells this file holds (`--shard K/N`); `layerbench merge` joins the shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Where the run's time went outside the builds themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<Overhead>,
    pub records: Vec<BuildRecord>,
}

/// An engine a run built on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineUse {
    /// What records name it by: an owned engine's name, the URL given, or `default`.
    pub name: String,
    /// Where it was reached.
    pub target: String,
    pub version: EngineVersion,
    pub isolation: Isolation,
}

/// Whether a cell's builds shared the engine's build cache with anything else.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// An engine others use too: a cell is cold only by the cache it is told to ignore and a nonce in its files.
    #[default]
    Shared,
    /// An engine layerbench owns, emptied (build cache and images, base images kept) before every cell: truly cold.
    Private,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Shared => "shared",
            Isolation::Private => "private",
        }
    }
}

/// One of `count` shares of a run's cells: the cells whose index modulo `count` is `index - 1`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `K/N` with 1 ≤ K ≤ N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?} is not K/N with 1 <= K <= N (for example 2/3)");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the cell with this plan index is in the shard.
    pub fn holds(self, cell_index: usize) -> bool {
        cell_index % self.count as usize == (self.index - 1) as usize
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The run's time outside the builds (milliseconds, summed over its engines): what the harness itself costs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Overhead {
    /// Inside the engines' build calls (warm-up builds included).
    pub builds_ms: f64,
    /// Everything else while cells ran: the parts below and the rest (writing results, events).
    pub outside_ms: f64,
    /// Copying the app into scratch workspaces and applying scenario changes.
    pub workspace_ms: f64,
    /// Making build contexts and reading what each build will see (for miss reasons).
    pub context_ms: f64,
    /// Inspecting built images (sizes, binaries, probes, layer contents).
    pub inspection_ms: f64,
    /// Removing what a cell left, and emptying an owned engine before a cell.
    pub cleanup_ms: f64,
    /// Waiting for an engine that stopped answering.
    pub waiting_ms: f64,
}

impl Overhead {
    /// The time outside builds as a share of the time in them (0 when nothing was built).
    pub fn share(&self) -> f64 {
        if self.builds_ms > 0.0 {
            self.outside_ms / self.builds_ms
        } else {
            0.0
        }
    }

    /// `8.7 s = 15.3 % of 56.7 s in builds (target ≤ 5 %): workspaces …, other …`.
    pub fn summary(&self) -> String {
        let s = |ms: f64| format!("{:.1} s", ms / 1000.0);
        let other = (self.outside_ms - self.workspace_ms - self.context_ms - self.inspection_ms - self.cleanup_ms - self.waiting_ms).max(0.0);
        format!(
            "{} = {:.1} % of {} in builds (target ≤ 5 %): workspaces {}, contexts {}, inspection {}, cleanup {}, waiting {}, other {}",
            s(self.outside_ms),
            self.share() * 100.0,
            s(self.builds_ms),
            s(self.workspace_ms),
            s(self.context_ms),
            s(self.inspection_ms),
            s(self.cleanup_ms),
            s(self.waiting_ms),
            s(other)
        )
    }

    pub fn add(&mut self, other: &Overhead) {
        self.builds_ms += other.builds_ms;
        self.outside_ms += other.outside_ms;
        self.workspace_ms += other.workspace_ms;
        self.context_ms += other.context_ms;
        self.inspection_ms += other.inspection_ms;
        self.cleanup_ms += other.cleanup_ms;
        self.waiting_ms += other.waiting_ms;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreProvenance {
    pub path: String,
    pub recipe_fingerprint: String,
    pub mirror: String,
    pub modules: usize,
    pub versions: usize,
}

/// The options a run was started with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunOptions {
    pub variants: Vec<String>,
    pub scenarios: Vec<String>,
    pub repetitions: u32,
    pub builders: Vec<Builder>,
    pub cache_state: CacheState,
    pub proxy_url: String,
    /// The suite the cells came from, if any.
    #[serde(default)]
    pub suite: Option<String>,
    /// Every template built: its Dockerfile, target, build arguments and probe (absent in version 1 files).
    #[serde(default)]
    pub templates: Vec<TemplateRecord>,
    /// The build context, relative to the app when inside it (`` for the app itself).
    #[serde(default)]
    pub context: String,
    /// The upstream GOPROXY the module proxy forwarded to, if any.
    #[serde(default)]
    pub upstream: Option<String>,
    /// `run --matrix`: every engine built every cell (absent, false, when the engines shared the cells out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub matrix: bool,
    /// How BuildKit builds got their context (absent in files written before the session: a tar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_transfer: Option<ContextTransfer>,
    /// `builtin` when the run dropped the templates' `# syntax=` directives (absent: they were kept).
    #[serde(default, skip_serializing_if = "is_directive")]
    pub frontend: Frontend,
}

fn is_directive(f: &Frontend) -> bool {
    *f == Frontend::Directive
}

/// Which Dockerfile frontend BuildKit reads a template with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Frontend {
    /// The one the Dockerfile's `# syntax=` directive names, else the engine's own.
    #[default]
    Directive,
    /// The engine's built-in frontend: layerbench's copy of a Dockerfile drops its `# syntax=` line.
    Builtin,
}

/// How a build ended, written as the strings results files have always held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `ok`: the build succeeded.
    Ok,
    /// `failed`: the engine reported an error, or the harness could not finish the build.
    Failed,
    /// `timed-out`: cancelled by the build timeout.
    TimedOut,
    /// `not-applicable`: a legacy cell of a Dockerfile that needs BuildKit.
    NotApplicable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
            Outcome::NotApplicable => "not-applicable",
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The network profile of builds whose module proxy answers unshaped.
pub const LOOPBACK_NETWORK: &str = "loopback";

/// A template (variant) as the run built it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateRecord {
    pub name: String,
    /// The Dockerfile, relative to the app when inside it.
    pub dockerfile: String,
    /// The Dockerfile's content when the run began, as [`content_digest`] writes it: with `target` and `build_args`,
    /// what `check --from` matches a template's builds by. Absent in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_sha256: Option<String>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub probe: Option<Probe>,
    pub inspect_binary: Option<String>,
}

/// Milliseconds since the Unix epoch: the clock of every `*_unix_ms` field.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `sha256:` and the hex digest of `bytes`.
pub fn content_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// How a cell starts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// The baseline is built with the build cache ignored: every step executes.
    Cold,
    /// The baseline is built once unrecorded, then again (recorded) from the cache.
    Warm,
}

/// What one build started from: each record's own state, unlike the run's [`CacheState`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BuildStart {
    /// A cell's baseline, built ignoring the build cache (`--no-cache`).
    Cold,
    /// A cell's baseline, built from the cache an unrecorded identical build left.
    Warm,
    /// A scenario step: built after a change, on the cache the cell's earlier builds left.
    Rebuild,
}

impl BuildStart {
    /// The state of a cell's build: its baseline starts as the run chose, every later step is a rebuild.
    pub fn of(step: &str, run: CacheState) -> BuildStart {
        match (step, run) {
            ("baseline", CacheState::Cold) => BuildStart::Cold,
            ("baseline", CacheState::Warm) => BuildStart::Warm,
            _ => BuildStart::Rebuild,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuildStart::Cold => "cold",
            BuildStart::Warm => "warm",
            BuildStart::Rebuild => "rebuild",
        }
    }
}

/// One build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildRecord {
    pub variant: String,
    pub scenario: String,
    /// The scenario step's name, or `baseline`.
    pub step: String,
    pub repetition: u32,
    pub builder: Builder,
    /// What this build started from (files before version 3 copied the run's option here; reading them fixes that).
    pub cache_state: BuildStart,
    pub started_unix_ms: u64,
    /// Measured by the harness around the whole build call.
    pub wall_ms: f64,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// One per Dockerfile step the builder reported, in Dockerfile order.
    pub layers: Vec<LayerRecord>,
    pub image: Option<ImageRecord>,
    pub proxy: ProxyRecord,
    pub build_args: BTreeMap<String, String>,
    /// What the step's changes did (for example a bump's old and new version).
    pub notes: Vec<String>,
    /// The module proxy's network profile during this build (`loopback` when unshaped).
    #[serde(default = "loopback")]
    pub network: String,
    /// What the built image is and does (absent when inspection was off or the build failed).
    #[serde(default)]
    pub inspection: Option<Inspection>,
    /// The cell's index in the run's plan (the same in every shard of it; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<usize>,
    /// The engine the build ran on (see [`Results::engines`]; empty in older files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine: String,
    /// Whether the cell's engine was shared or owned and emptied before the cell.
    #[serde(default)]
    pub isolation: Isolation,
    /// The version of the engine the build ran on (absent in older files: [`Results::engine_version_of`] finds it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<EngineVersion>,
    /// A failed build's failing step's own output, its last 40 lines (BuildKit's vertex log, or the legacy
    /// builder's lines of that step); absent when it printed nothing or the build did not fail there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_log: Vec<String>,
}

impl BuildRecord {
    /// The build's error and, one per line under it, the failing step's own last lines, each after `| `.
    pub fn error_with_output(&self) -> Option<String> {
        let mut text = self.error.clone()?;
        for line in &self.error_log {
            text.push_str("\n| ");
            text.push_str(line);
        }
        Some(text)
    }
}

fn loopback() -> String {
    "loopback".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    /// The stage's `AS` name, or `stage-N` for an unnamed stage.
    pub stage: String,
    /// The Dockerfile instruction as written (build args not expanded), the same text for both builders.
    pub instruction: String,
    /// The 1-based line of the Dockerfile where the instruction starts (absent in version 1 files, and for steps that map to no line).
    #[serde(default)]
    pub line: Option<usize>,
    /// What the builder called the step (`[build 4/6] RUN go mod download`, `Step 5/11 : RUN go mod download`).
    #[serde(default)]
    pub vertex: String,
    pub cached: bool,
    pub duration_ms: f64,
    /// Milliseconds after the build started: daemon-side (BuildKit) or arrival at the client (legacy).
    pub start_ms: Option<f64>,
    pub end_ms: Option<f64>,
    pub error: Option<String>,
    /// Why an executed step of a rebuild missed the cache (absent for cached steps, baselines of older files, and steps that did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss_reason: Option<MissReason>,
}

/// Why a step executed instead of coming from the build cache, computed from what changed since the cell's previous build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissReason {
    pub kind: MissKind,
    /// What changed, named: files (first few), the build argument and its `ARG` line, the instruction, the base image, or the earlier miss.
    pub detail: String,
    /// The Dockerfile line the reason points at: the changed instruction, the `ARG`, the `FROM`, the step whose files changed, or the earlier missed step (absent for `cold` and `unexplained`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The kinds of [`MissReason`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum MissKind {
    /// Files under the step's COPY/ADD sources changed content, mode, owner or presence.
    Files,
    /// A build argument the step uses (explicitly or, for `RUN`, implicitly after its `ARG`) changed value.
    BuildArg,
    /// The instruction's text, or an earlier instruction of its stage, changed.
    Instruction,
    /// The stage's base image resolved to another image.
    BaseImage,
    /// The build ignored the cache (a cold baseline).
    Cold,
    /// An `ADD` of a URL or a git repository: its source is fetched at build time, outside the recorded context.
    Remote,
    /// An earlier step of the stage (or a stage it copies from) missed.
    Follows,
    /// Nothing recorded explains the miss.
    Unexplained,
}

impl MissKind {
    pub fn name(self) -> &'static str {
        match self {
            MissKind::Files => "files",
            MissKind::BuildArg => "build-arg",
            MissKind::Instruction => "instruction",
            MissKind::BaseImage => "base-image",
            MissKind::Cold => "cold",
            MissKind::Remote => "remote",
            MissKind::Follows => "follows",
            MissKind::Unexplained => "unexplained",
        }
    }
}

impl MissReason {
    /// A short form for tables: `follows line 7`, `cold`, or `kind: detail` with the detail cut at about 70 characters.
    pub fn short(&self) -> String {
        const MAX: usize = 70;
        match (self.kind, self.line) {
            (MissKind::Follows, Some(n)) => format!("follows line {n}"),
            (MissKind::Cold, _) => "cold".to_string(),
            _ if self.detail.chars().count() > MAX => format!("{}: {}…", self.kind.name(), self.detail.chars().take(MAX).collect::<String>()),
            _ => self.to_string(),
        }
    }
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: String,
    pub size_bytes: u64,
    pub layer_count: usize,
    pub user: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyRecord {
    pub requests: usize,
    pub bytes: u64,
    pub misses: usize,
    /// `module@version` of every zip served during the build.
    pub modules: Vec<String>,
    /// Every request the proxy received during the build, answered or not (absent in version 1 files).
    #[serde(default)]
    pub log: Vec<ServedRequest>,
}

/// One request to the module proxy during a build.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServedRequest {
    pub path: String,
    pub module: Option<String>,
    pub version: Option<String>,
    /// `list`, `info`, `mod`, `zip`, `latest` or `other`.
    pub kind: String,
    pub status: u16,
    pub bytes: u64,
    /// `store`, `upstream` (fetched from the upstream GOPROXY during this build), `upstream-cache` (an earlier upstream answer kept in the cache folder) or `none`.
    pub served_from: String,
}

/// Which builder runs a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    Buildkit,
    Legacy,
}

impl Builder {
    /// The name used in results, tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Builder::Buildkit => "buildkit",
            Builder::Legacy => "legacy",
        }
    }
}

/// The engine's version, as it reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineVersion {
    pub engine: String,
    pub api: String,
}

impl std::fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Docker {} (API {})", self.engine, self.api)
    }
}

/// The machine the engine runs on, as the engine reports it (plus the CPU model from `/proc/cpuinfo`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Machine {
    pub operating_system: String,
    pub kernel: String,
    pub architecture: String,
    pub cpus: u32,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub storage_driver: String,
    pub cgroup_version: String,
    /// `graphdriver` (the engine's own image store) or `containerd` (the containerd image store); empty in files
    /// written before engines were told apart by it.
    #[serde(default)]
    pub image_store: String,
}

/// Where a base image came from, for reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseImage {
    pub name: String,
    pub id: String,
    /// `local stand-in` or `as found` (an image layerbench did not make) or `pulled`.
    pub provenance: String,
    /// For stand-ins: the Debian packages it was made from.
    pub packages: Vec<String>,
    /// What happened in this run: `present`, `built`, `pulled`.
    pub action: String,
}

/// Everything inspection learned about one image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Inspection {
    /// The entrypoint binary (or the binary the run named).
    pub binary: Option<BinaryFacts>,
    /// Binaries named by the image's `io.layerbench.inspect` label.
    pub tools: Vec<BinaryFacts>,
    /// Other files named by that label: path and text (at most 2,000 characters).
    #[serde(default)]
    pub files: Vec<(String, String)>,
    /// The configured probe's run (absent when no probe is configured).
    pub runtime: Option<RuntimeCheck>,
    /// The image's history, oldest first: what created each entry and its size in bytes.
    #[serde(default)]
    pub layer_sizes: Vec<LayerSize>,
    /// What the image's layers made by `go mod download` and `go build` steps hold, from the exported image
    /// (absent before version 3, and for images without such layers, such as a multi-stage image's final stage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_contents: Vec<LayerContents>,
    /// Problems met while inspecting that did not stop it (a missing file, an unreadable ELF).
    pub notes: Vec<String>,
    /// The failure that stopped inspection or the probe (an engine error, a probe that timed out); the build itself is still recorded.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerSize {
    pub created_by: String,
    pub size_bytes: u64,
}

/// What one layer holds, grouped by what Go writes: its module cache (downloaded sources and zips), its build cache
/// (compiled packages) and package archives (`.a`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerContents {
    /// The history entry that made the layer.
    pub created_by: String,
    pub files: u64,
    /// The bytes of every regular file in the layer.
    pub bytes: u64,
    /// Bytes under a Go module cache (`…/pkg/mod/`).
    pub module_cache_bytes: u64,
    /// Bytes under a Go build cache (`…/go-build/`).
    pub build_cache_bytes: u64,
    /// Compiled outputs in that build cache (its `…-d` files): packages the step compiled.
    pub compiled_outputs: u64,
    /// Compiled package archives (`.a` files) anywhere in the layer.
    pub package_archives: u64,
    /// The largest folders (two path levels), with their bytes, largest first (at most five).
    pub largest_folders: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BinaryFacts {
    pub path: String,
    pub size_bytes: u64,
    /// `static` (no program interpreter, no needed libraries) or `dynamic`.
    pub linkage: String,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// `path version` of the main module and every dependency, from the binary's Go build info.
    pub go_modules: Vec<String>,
}

/// A runtime probe: the command a container from the image runs (with no network), and what it must exit with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// The container's command; the image's entrypoint, if any, runs with it as arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub expected_exit: i64,
    #[serde(default = "default_probe_timeout")]
    pub timeout_seconds: u64,
}

fn default_probe_timeout() -> u64 {
    60
}

impl Probe {
    /// The bundled sample's self-test probe.
    pub fn selftest() -> Probe {
        Probe { command: vec!["selftest".into()], expected_exit: 0, timeout_seconds: default_probe_timeout() }
    }
}

/// The configured probe, run in a container with no network as the image's user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeCheck {
    /// How the facts were gathered.
    pub method: String,
    /// The container's command (the image's entrypoint, if any, runs with it).
    #[serde(default)]
    pub command: Vec<String>,
    pub exit_code: i64,
    /// The exit code the probe expects (0 unless configured).
    #[serde(default)]
    pub expected_exit: i64,
    /// The probe exited with the expected code (and, for the sample's self-test, printed its success line).
    #[serde(alias = "selftest_passed")]
    pub passed: bool,
    /// Facts the probe printed as `selftest: running as uid N`, `selftest: write-binary allowed|denied`, `selftest: write-etc allowed|denied`.
    pub uid: Option<u32>,
    pub can_write_binary: Option<bool>,
    pub can_write_etc: Option<bool>,
    /// The container's output (at most 2,000 characters).
    pub output: String,
}

impl LayerRecord {
    /// A `FROM` line: resolving a base image, not a cacheable step (BuildKit reports it executed in zero time).
    pub fn is_base_image(&self) -> bool {
        self.instruction.starts_with("FROM ")
    }
}

impl Results {
    /// Writes the file atomically and synced: a failed write (a full disk) leaves the last complete file.
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let err = |source| ResultsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        crate::durable::write(path, (json + "\n").as_bytes()).map_err(err)
    }

    pub fn read(path: &Path) -> Result<Results, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Results::parse(&text, path)
    }

    /// Parses results text; `path` names the file in errors, which also name the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Results, ResultsError> {
        let mut results: Results = serde_json::from_str(text).map_err(|e| ResultsError::Parse {
            path: path.to_path_buf(),
            message: crate::toml_lines::one_line(&e.to_string()),
        })?;
        results.upgrade();
        Ok(results)
    }

    /// The version of the engine a record's build ran on: the record's own, else (older files) that of the engine it
    /// names in [`Results::engines`], else the run's engine.
    pub fn engine_version_of<'a>(&'a self, record: &'a BuildRecord) -> &'a EngineVersion {
        record
            .engine_version
            .as_ref()
            .or_else(|| self.engines.iter().find(|e| e.name == record.engine).map(|e| &e.version))
            .unwrap_or(&self.engine)
    }

    /// The engines the records name, in the order of [`Results::engines`], then as records first name them
    /// (`""` for records of files written before records named their engine).
    pub fn record_engines(&self) -> Vec<String> {
        let mut names: Vec<String> = self.engines.iter().map(|e| e.name.clone()).filter(|n| self.records.iter().any(|r| &r.engine == n)).collect();
        for r in &self.records {
            if !names.contains(&r.engine) {
                names.push(r.engine.clone());
            }
        }
        names
    }

    /// The same results with only the builds of one engine (and only that engine in [`Results::engines`]):
    /// what a run on that engine alone would have recorded; how a matrix run is judged and reported per engine.
    pub fn of_engine(&self, name: &str) -> Results {
        let mut one = self.clone();
        one.records.retain(|r| r.engine == name);
        one.engines.retain(|e| e.name == name);
        if let Some(e) = one.engines.first() {
            one.engine = e.version.clone();
        }
        one.options.matrix = false;
        one
    }

    /// Whether any cell was built on more than one engine: a matrix run's file (or merged files of one).
    pub fn is_matrix(&self) -> bool {
        self.options.matrix || {
            // Each build (cell, step) and the first engine that made it.
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            self.records.iter().any(|r| {
                let key = format!("{:?} {} × {} · {} · rep {} · {} · {}", r.cell, r.variant, r.scenario, r.builder.name(), r.repetition, r.network, r.step);
                *seen.entry(key).or_insert(r.engine.as_str()) != r.engine
            })
        }
    }

    /// Brings an older file's records to today's meaning: before version 3, a scenario step's record copied the run's
    /// cache option though it was a rebuild.
    fn upgrade(&mut self) {
        if self.schema_version < 3 {
            for r in &mut self.records {
                r.cache_state = BuildStart::of(&r.step, self.options.cache_state);
            }
        }
    }
}

/// A results file around the given records, with placeholder provenance (for unit tests).
/// How a BuildKit build's context reaches the engine (the legacy builder always takes a tar).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ContextTransfer {
    /// Through the build's session, the files the engine asks for, as the Docker CLI sends them.
    #[default]
    Session,
    /// A tar uploaded with the build request, whole.
    Tar,
}

impl std::fmt::Display for ContextTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContextTransfer::Session => "session",
            ContextTransfer::Tar => "tar",
        })
    }
}

#[cfg(test)]
pub(crate) fn results_with(records: Vec<BuildRecord>) -> Results {
    Results {
        schema_version: SCHEMA_VERSION,
        run_id: "test".into(),
        harness_version: "0".into(),
        git_commit: None,
        started_unix_ms: 0,
        engine: EngineVersion { engine: "20.10".into(), api: "1.41".into() },
        machine: None,
        base_images: vec![],
        store: StoreProvenance { path: "s".into(), recipe_fingerprint: "f".into(), mirror: "m".into(), modules: 1, versions: 1 },
        app: "a".into(),
        options: RunOptions {
            variants: vec![],
            scenarios: vec![],
            repetitions: 1,
            builders: vec![Builder::Buildkit],
            cache_state: CacheState::Cold,
            proxy_url: "p".into(),
            suite: None,
            templates: vec![],
            context: String::new(),
            upstream: None,
            matrix: false,
            context_transfer: None,
            frontend: Frontend::Directive,
        },
        complete: true,
        engines: vec![],
        shard: None,
        overhead: None,
        records,
    }
}

/// A successful BuildKit build on loopback whose steps are `(instruction, cached, seconds)` in stage `build` (for unit tests).
#[cfg(test)]
pub(crate) fn record_with(variant: &str, scenario: &str, step: &str, wall_seconds: f64, steps: &[(&str, bool, f64)], requests: usize) -> BuildRecord {
    BuildRecord {
        variant: variant.into(),
        scenario: scenario.into(),
        step: step.into(),
        repetition: 1,
        builder: Builder::Buildkit,
        cache_state: BuildStart::of(step, CacheState::Cold),
        started_unix_ms: 0,
        wall_ms: wall_seconds * 1000.0,
        outcome: Outcome::Ok,
        error: None,
        layers: steps
            .iter()
            .map(|(instruction, cached, seconds)| LayerRecord {
                stage: "build".into(),
                instruction: instruction.to_string(),
                line: None,
                vertex: String::new(),
                cached: *cached,
                duration_ms: seconds * 1000.0,
                start_ms: Some(0.0),
                end_ms: Some(seconds * 1000.0),
                error: None,
                miss_reason: None,
            })
            .collect(),
        image: None,
        proxy: ProxyRecord { requests, ..Default::default() },
        build_args: Default::default(),
        notes: vec![],
        network: "loopback".into(),
        inspection: None,
        cell: None,
        engine: String::new(),
        isolation: Isolation::Shared,
        engine_version: None,
        error_log: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_says_what_its_build_started_from_and_older_files_are_read_that_way() {
        let mut old = results_with(vec![record_with("v", "s", "baseline", 1.0, &[], 0), record_with("v", "s", "edit", 1.0, &[], 0)]);
        // Before version 3 every record copied the run's option, the rebuild too.
        old.schema_version = 2;
        old.options.cache_state = CacheState::Warm;
        for r in &mut old.records {
            r.cache_state = BuildStart::Warm;
        }
        let dir = std::env::temp_dir().join(format!("layerbench-results-upgrade-{}", std::process::id()));
        let path = dir.join("results.json");
        old.write(&path).unwrap();
        let read = Results::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let states: Vec<BuildStart> = read.records.iter().map(|r| r.cache_state).collect();
        assert_eq!(states, [BuildStart::Warm, BuildStart::Rebuild]);
        assert_eq!(BuildStart::of("baseline", CacheState::Cold), BuildStart::Cold);
        assert_eq!(BuildStart::of("edit", CacheState::Cold), BuildStart::Rebuild);
    }

    #[test]
    fn a_bad_results_file_names_the_file_and_the_line() {
        let good = serde_json::to_string_pretty(&results_with(vec![record_with("v", "s", "baseline", 1.0, &[("RUN x", true, 1.0)], 0)])).unwrap();
        assert!(Results::parse(&good, Path::new("r.json")).is_ok());
        let bad = good.replacen("\"wall_ms\": 1000.0", "\"wall_ms\": \"slow\"", 1);
        assert_ne!(bad, good);
        let line = bad.lines().position(|l| l.contains("\"slow\"")).unwrap() + 1;
        let e = Results::parse(&bad, Path::new("runs/r.json")).unwrap_err().to_string();
        assert!(e.contains("runs/r.json") && e.contains(&format!("line {line}")), "{e}");
    }
}
