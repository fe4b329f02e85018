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
pub enum Command {
    /// Provision everything: check the engine, make the base images, build the module store (a second run only checks).
    Setup {
        /// Pull missing base images from their registry instead of building local stand-ins.
        #[arg(long)]
        pull: bool,
    },
    /// Make sure the base images golang:1.23 and debian:bookworm-slim exist.
    Images {
        #[arg(long)]
        pull: bool,
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
        #[arg(long)]
        store: Option<PathBuf>,
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
        #[arg(long = "proxy-port", default_value_t = DEFAULT_PORT)]
        proxy_port: u16,
        #[arg(long)]
        pull: bool,
        /// Build without the build cache, so every step runs and every module is fetched.
        #[arg(long)]
        no_cache: bool,
    },
    /// Build variants over scenarios and record every step's cache outcome and time.
    Run {
        /// The app (default: the bundled sample-go-app).
        #[arg(long)]
        app: Option<PathBuf>,
        /// A variant (dockerfiles/<NAME>.Dockerfile); repeat for several; default: all.
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// A scenario by name; repeat for several; default: all in the scenarios folder.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// The folder of scenario files (default: the shipped scenarios/).
        #[arg(long)]
        scenarios_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        repetitions: u32,
        #[arg(long, value_enum, default_value_t = BuilderChoice::Buildkit)]
        builder: BuilderChoice,
        /// How each cell starts: cold (baseline built ignoring the cache) or warm (baseline already cached).
        #[arg(long, value_enum, default_value_t = CacheChoice::Cold)]
        cache: CacheChoice,
        /// Write DIR/results.json instead of results/<run-id>/results.json.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run a suite (`claims`, or a suite file) instead of --variant/--scenario/--builder/--repetitions, and print claim verdicts at the end.
        #[arg(long, conflicts_with_all = ["variants", "scenarios", "repetitions", "builder"])]
        suite: Option<String>,
        #[arg(long = "proxy-port", default_value_t = DEFAULT_PORT)]
        proxy_port: u16,
    },
    /// Write REPORT.md, summary.csv and charts (SVG and PNG) next to a results file, from that file alone.
    Report { results: PathBuf },
    /// Recompute the claim verdicts from a results file alone.
    Verdicts {
        results: PathBuf,
        /// Print a JSON list of {"id", "verdict", "evidence"}.
        #[arg(long)]
        json: bool,
    },
    /// Compare two results files: per cell and step, the change in median time (with its uncertainty) and in cache outcomes.
    Compare {
        before: PathBuf,
        after: PathBuf,
        #[arg(long)]
        json: bool,
        /// Exit 1 when a step got significantly slower or lost cache hits.
        #[arg(long)]
        fail_on_regression: bool,
    },
    /// Remove the containers and images layerbench created (only those: they carry its label).
    Clean {
        /// Also remove the base-image stand-ins layerbench built.
        #[arg(long)]
        base_images: bool,
    },
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
