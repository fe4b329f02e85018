//! The command line (the only user of clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::goproxy::server::DEFAULT_PORT;

#[derive(Debug, Parser)]
#[command(name = "layerbench", version, about = "Real Docker builds of Go apps over scripted change scenarios")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum Command {
    /// Provision everything: check the engine, make the base images, build the module store (a second run only checks).
    Setup {
        /// Pull missing base images from their registry instead of building local stand-ins.
        #[arg(long)]
        pull: bool,
    },
    /// Make sure base images exist: golang:1.23 and debian:bookworm-slim, or the IMAGEs named.
    ///
    /// A present image is used as it is. A missing image is made as a labelled local stand-in from Debian packages
    /// when layerbench has one: golang:1.19, 1.21, 1.22 and 1.23 (also as `<v>-bookworm`), debian:bookworm-slim,
    /// and gcr.io/distroless/{static,base}[-debian12] with the tags latest and nonroot. A stand-in made by an
    /// earlier layerbench is made again. A missing image with no stand-in is refused, with how to provide it
    /// (`docker load`, or `layerbench images --pull IMAGE` where a registry answers).
    Images {
        /// Pull missing base images from their registry (where one answers) instead of building local stand-ins.
        #[arg(long)]
        pull: bool,
        /// The images to make sure of (default: golang:1.23 and debian:bookworm-slim).
        #[arg(value_name = "IMAGE")]
        names: Vec<String>,
    },
    /// Build the module store from Debian packages.
    Store {
        /// Where to write the store (default: the cache's modstore).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A recipe file instead of the built-in scripts/module-store.toml.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Rebuild even when a store from the same recipe exists.
        #[arg(long)]
        force: bool,
    },
    /// Serve a GOPROXY-layout directory on loopback and print every request.
    Proxy {
        /// The GOPROXY-layout folder to serve (default: the module store in the cache).
        #[arg(long)]
        store: Option<PathBuf>,
        /// The loopback port to listen on.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Added before every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Cap on bytes per second for every answer.
        #[arg(long)]
        bandwidth: Option<u64>,
        /// Forward what the store lacks to this GOPROXY (http or https); default: the first http(s) entry of $GOPROXY, if any.
        #[arg(long)]
        upstream: Option<String>,
        /// Where upstream answers are kept (default: the cache's upstream/ folder).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Provision, build the sample service with BuildKit, run its self-test from the image, and report.
    Selftest {
        /// The app to build (default: the bundled sample-go-app).
        #[arg(long)]
        app: Option<PathBuf>,
        /// The loopback port of the module proxy the build uses.
        #[arg(long = "proxy-port", default_value_t = DEFAULT_PORT)]
        proxy_port: u16,
        /// Pull missing base images from their registry instead of building local stand-ins.
        #[arg(long)]
        pull: bool,
        /// Build without the build cache, so every step runs and every module is fetched.
        #[arg(long)]
        no_cache: bool,
    },
    /// Build Dockerfile templates over change scenarios and record every step's cache outcome and time.
    Run(RunArgs),
    /// Write REPORT.md, summary.csv and charts (SVG and PNG) next to a results file, from that file alone.
    Report {
        /// The results file (`results.json`); the report is written in its folder.
        results: PathBuf,
    },
    /// Recompute the claim verdicts from a results file alone.
    Verdicts {
        /// The results file (`results.json`).
        results: PathBuf,
        /// Print a JSON list of {"id", "verdict", "evidence"}.
        #[arg(long)]
        json: bool,
    },
    /// Compare two results files: per cell and step, the change in median time (with its uncertainty) and in cache outcomes.
    Compare {
        /// The earlier results file.
        before: PathBuf,
        /// The later results file, compared with the earlier one.
        after: PathBuf,
        /// Print the comparison as JSON: one object per cell step (`key`, `step`, `before`, `after`, `ratio`, `cache_changes`, `lost`, `engine_differences`).
        #[arg(long)]
        json: bool,
        /// Exit 1 when a step got significantly slower or lost cache hits.
        #[arg(long)]
        fail_on_regression: bool,
    },
    /// Build the templates of a project file (layerbench.toml) and judge its expectations: exit 0 when all pass, 1 when one fails, 2 for a bad project file, 3 for the environment.
    Check(CheckArgs),
    /// Join the results files of a run's shards (`run --shard K/N`, one per CI job) into one, and write its report; files from different configurations are refused.
    Merge {
        /// The shards' results files, one per shard.
        #[arg(required = true, value_name = "RESULTS")]
        files: Vec<PathBuf>,
        /// Write DIR/results.json and the report there.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Remove the containers and images layerbench created (only those: they carry its label); with --engine, empty an engine layerbench owns whole.
    Clean {
        /// Also remove the base-image stand-ins layerbench built.
        #[arg(long, conflicts_with_all = ["run", "engine"])]
        base_images: bool,
        /// Only what the run with this id made (its images and containers), leaving other runs' alone.
        #[arg(long, value_name = "ID", conflicts_with = "engine")]
        run: Option<String>,
        /// Empty this engine layerbench owns whole (every container, every image but its base images, its whole build cache).
        #[arg(long, value_name = "NAME")]
        engine: Option<String>,
    },
    /// Engines layerbench owns: a dockerd of its own per name, with its own data root and socket under the cache folder.
    #[command(subcommand)]
    Engine(EngineCommand),
}

/// `layerbench engine …`.
#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Start a dockerd of layerbench's own (a bridge of its own, no firewall rules, the host's engine untouched), load golang:1.23 and debian:bookworm-slim into it (from the root filesystems kept in the cache folder, made first when missing; nothing is pulled), and print how to use it.
    Start {
        /// Its name: a-z, 0-9 and `-`.
        #[arg(long, default_value = crate::engine::owned::DEFAULT_OWNED_NAME)]
        name: String,
        /// The Debian release whose Docker it runs: `bookworm` is the host's dockerd (Docker 20.10); another (`trixie`: Docker 26.1) runs from that release's root filesystem, made once under the cache folder (debootstrap, then apt; about 1.5 minutes).
        #[arg(long, default_value = crate::engine::release::HOST_RELEASE, value_name = "RELEASE")]
        release: String,
        /// Where it keeps images: `graphdriver` (overlay2), or `containerd` (the containerd image store, the default of new Docker 29 installs; needs Docker 24 or later, so another release than bookworm).
        #[arg(long, default_value = "graphdriver", value_name = "STORE")]
        image_store: crate::engine::owned::ImageStore,
    },
    /// List the engines layerbench owns: name, state, release, Docker version, API, BuildKit, image store, images, disk used, socket.
    Ls,
    /// Stop an engine layerbench owns and remove its folder: no process, mount or socket is left.
    Stop {
        /// The name of the engine to stop.
        #[arg(long, default_value = crate::engine::owned::DEFAULT_OWNED_NAME, conflicts_with = "all")]
        name: String,
        /// Stop every engine layerbench owns.
        #[arg(long)]
        all: bool,
        /// Keep the data root (base images, build cache), so the next start is quicker.
        #[arg(long)]
        keep: bool,
    },
}

/// `layerbench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Go app (its module root): a folder, or `@sample` for the bundled sample. Default: the suite's app, else the current folder.
    #[arg(long)]
    pub app: Option<String>,
    /// A Dockerfile template to build, as `PATH` or `NAME=PATH` (named after the file otherwise); repeat for several. Default: the app's `dockerfiles/*.Dockerfile`.
    #[arg(long = "dockerfile", value_name = "[NAME=]PATH")]
    pub dockerfiles: Vec<String>,
    /// A variant of the app's `dockerfiles/<NAME>.Dockerfile`; repeat for several.
    #[arg(long = "variant", conflicts_with = "dockerfiles")]
    pub variants: Vec<String>,
    /// The stage to build (every template).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument for every template, `KEY=VALUE`; repeat for several.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The build context (default: the app); the app and the context must be one inside the other.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// A runtime probe: the command a container from each image runs with no network (after the image's entrypoint, if any), shell-quoted, e.g. `--probe "selftest"`.
    #[arg(long, value_name = "CMD")]
    pub probe: Option<String>,
    /// The exit code the probe must give.
    #[arg(long, default_value_t = 0, requires = "probe")]
    pub probe_exit: i64,
    /// Seconds before the probe is stopped and recorded as failed.
    #[arg(long, default_value_t = 60, requires = "probe")]
    pub probe_timeout: u64,
    /// The binary to inspect (ELF linkage, Go modules) instead of the image's entrypoint.
    #[arg(long, value_name = "PATH")]
    pub inspect_binary: Option<String>,
    /// Also read what each template's first cold image's `go mod download` and `go build` layers hold (claim C7's
    /// evidence): exports that image, seconds for a large one. A suite reads them when its claims need them.
    #[arg(long)]
    pub layer_contents: bool,
    /// A scenario: a shipped one by name, one of --scenarios-dir by name, or a file ending in `.toml`; repeat for several. Default: all (for an app other than the sample, all but those marked `sample_only`).
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// A folder of scenario files to use instead of the shipped ones.
    #[arg(long)]
    pub scenarios_dir: Option<PathBuf>,
    /// How many times each template × scenario × builder is built, each repetition a cell of its own (its baseline and every scenario step).
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// The builder of every cell: BuildKit, the legacy builder, or both (a cell for each).
    #[arg(long, value_enum, default_value_t = BuilderChoice::Buildkit)]
    pub builder: BuilderChoice,
    /// How each cell starts: cold (baseline built ignoring the cache) or warm (baseline already cached).
    #[arg(long, value_enum, default_value_t = CacheChoice::Cold)]
    pub cache: CacheChoice,
    /// Run a suite (a shipped one such as `claims`, or a suite file) instead of --variant/--dockerfile/--scenario/--builder/--repetitions, and print claim verdicts at the end.
    #[arg(long, conflicts_with_all = ["variants", "dockerfiles", "scenarios", "repetitions", "builder", "target", "build_args", "probe", "inspect_binary", "layer_contents"])]
    pub suite: Option<String>,
    /// Print every step of every build as it finishes (on a terminal the log is otherwise one line per build).
    #[arg(long)]
    pub verbose: bool,
    /// Go on with a run cut short (interrupted, or its engine lost): give the same options and its results file; only the cells that file lacks are built, and their records join it.
    #[arg(long, value_name = "RESULTS", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Build only share K of N of the run's cells (cell i when i mod N = K-1), for N CI jobs; `layerbench merge` joins their results.
    #[arg(long, value_name = "K/N", value_parser = crate::results::Shard::parse)]
    pub shard: Option<crate::results::Shard>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `layerbench check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The project file (default: ./layerbench.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A results file to judge `max_slowdown` against; a build it has that now fails or is missing fails the check.
    #[arg(long, value_name = "RESULTS")]
    pub baseline: Option<PathBuf>,
    /// Also write the judgements as JUnit XML (one testsuite per template, one testcase per expectation).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the judgements as JSON on stdout (everything else goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Judge a finished run's results file instead of building.
    #[arg(long, value_name = "RESULTS")]
    pub from: Option<PathBuf>,
    /// An inconclusive expectation fails the check (by default it passes).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Where a run's modules come from and its results go (`run` and `check`).
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// An engine to build on: the name of one layerbench owns (`layerbench engine start`), or a URL (`unix:///path`, `tcp://host:port`); repeat to spread the cells over several (one build at a time on each). Default: DOCKER_HOST or the default socket.
    #[arg(long = "engine", value_name = "NAME|URL")]
    pub engines: Vec<String>,
    /// How BuildKit builds get their context: `session` (as the Docker CLI does: the engine asks the build's session for the files it reads, and on a rebuild only changed files travel) or `tar` (the context uploaded whole with the request). The legacy builder always takes a tar.
    #[arg(long = "context-transfer", value_enum, value_name = "HOW", default_value_t = crate::context::ContextTransfer::Session)]
    pub context_transfer: crate::context::ContextTransfer,
    /// `builtin`: build every template with the engine's built-in Dockerfile frontend, dropping a `# syntax=` directive
    /// from layerbench's copy of the Dockerfile (never from yours; each build says so in a note), for engines that
    /// cannot pull the frontend image the directive names. Default: `directive`, or the suite's or project file's `frontend`.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub frontend: Option<crate::results::Frontend>,
    /// Build every cell on every --engine (two or more), instead of sharing the cells out; the run ends with the cell steps whose outcomes, miss reasons or verdicts differ between engines. Not with --shard.
    #[arg(long)]
    pub matrix: bool,
    /// Write DIR/results.json instead of ./layerbench-results/<run-id>/results.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The loopback port of the module proxy the builds use (part of `GOPROXY`, so of the cache key of every `RUN` after `ARG GOPROXY`; a port in use is an error, never replaced by another).
    #[arg(long = "proxy-port", default_value_t = DEFAULT_PORT)]
    pub proxy_port: u16,
    /// An upstream GOPROXY (http or https URL) for the modules the store lacks; its answers are kept in the cache folder. Default: an http(s) entry of $GOPROXY, if any.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Forward nothing upstream, even when $GOPROXY names one.
    #[arg(long, conflicts_with = "upstream")]
    pub no_upstream: bool,
    /// Serve this GOPROXY-layout folder as the module store instead of the built-in one (it is only read).
    #[arg(long, value_name = "DIR", conflicts_with = "recipe")]
    pub store: Option<PathBuf>,
    /// Build the module store from this recipe (into its own folder in the cache; the built-in store is left alone).
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,
    /// Cancel a build that has not finished after this long (in the engine too), record it as `timed-out` and go on, e.g. `90s`, `30m`. Default: the suite's or project file's `build_timeout`, else 30m.
    #[arg(long = "build-timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub build_timeout: Option<std::time::Duration>,
    /// When the engine stops answering, wait this long for it to come back before stopping the run (everything kept, resumable).
    #[arg(long = "engine-wait", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2m")]
    pub engine_wait: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderChoice {
    Buildkit,
    Legacy,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheChoice {
    Cold,
    Warm,
}

/// The exit code of a command that ran but whose check failed.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// The exit code of input that cannot be used: a usage error, a bad project or results file.
pub const EXIT_BAD_INPUT: u8 = 2;
/// The exit code of an environment that failed: the engine, the disk, the network.
pub const EXIT_ENVIRONMENT: u8 = 3;
/// The exit code of a run stopped by Ctrl-C or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The error and its causes, leaving out a cause the message above it already quotes.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Input the user gave that cannot be used (a project file, a results file): exit 2, like a usage error.
#[derive(Debug)]
pub struct BadInput(anyhow::Error);

impl BadInput {
    pub fn from_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(BadInput(e.into()))
    }
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", error_text(&self.0))
    }
}

impl std::error::Error for BadInput {}

/// Where status lines go: stdout, or stderr when stdout carries JSON.
pub enum Say {
    Stdout,
    Stderr,
}

impl Say {
    pub fn line(&self, text: &str) {
        match self {
            Say::Stdout => println!("{}", crate::table::fit(text)),
            Say::Stderr => eprintln!("{}", crate::table::fit(text)),
        }
    }
}


pub fn print_provisioned(p: &crate::setup::Provisioned, say: &Say) {
    say.line(&format!("engine: Docker {} (API {})", p.engine.engine, p.engine.api));
    for image in &p.base_images {
        say.line(&format!("base image {}: {} [{}] {}", image.name, image.provenance, image.action, short(&image.id)));
    }
    say.line(&format!(
        "module store {}: {} ({} modules, {} versions, {:.1} MB, {:.1} s)",
        p.store.path.display(),
        p.store.action,
        p.store.modules,
        p.store.versions,
        p.store.zip_bytes as f64 / 1e6,
        p.store.seconds
    ));
}

pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
