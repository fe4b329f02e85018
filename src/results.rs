//! The results file: a versioned record of every build of a run, written after each build so an interrupted run keeps what it measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Builder, EngineVersion, Machine};
use crate::images::BaseImage;

/// Bumped when a name in the schema changes meaning or disappears (adding fields keeps it).
pub const SCHEMA_VERSION: u32 = 1;

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
    pub records: Vec<BuildRecord>,
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

/// One build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildRecord {
    pub variant: String,
    pub scenario: String,
    /// The scenario step's name, or `baseline`.
    pub step: String,
    pub repetition: u32,
    pub builder: Builder,
    pub cache_state: CacheState,
    pub started_unix_ms: u64,
    /// Measured by the harness around the whole build call.
    pub wall_ms: f64,
    /// `ok`, `failed`, or `not-applicable` (a legacy cell of a Dockerfile that needs BuildKit).
    pub outcome: String,
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
    pub inspection: Option<crate::inspect::Inspection>,
}

fn loopback() -> String {
    "loopback".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub stage: String,
    pub instruction: String,
    pub cached: bool,
    pub duration_ms: f64,
    /// Milliseconds after the build started: daemon-side (BuildKit) or arrival at the client (legacy).
    pub start_ms: Option<f64>,
    pub end_ms: Option<f64>,
    pub error: Option<String>,
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
}

impl LayerRecord {
    /// A `FROM` line: resolving a base image, not a cacheable step (BuildKit reports it executed in zero time).
    pub fn is_base_image(&self) -> bool {
        self.instruction.starts_with("FROM ")
    }
}

impl Results {
    /// Writes the file atomically (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let err = |source| ResultsError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let tmp = path.with_extension("json.partial");
        let json = serde_json::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, json + "\n").map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn read(path: &Path) -> Result<Results, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ResultsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// A results file around the given records, with placeholder provenance (for unit tests).
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
        },
        complete: true,
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
        cache_state: CacheState::Cold,
        started_unix_ms: 0,
        wall_ms: wall_seconds * 1000.0,
        outcome: "ok".into(),
        error: None,
        layers: steps
            .iter()
            .map(|(instruction, cached, seconds)| LayerRecord {
                stage: "build".into(),
                instruction: instruction.to_string(),
                cached: *cached,
                duration_ms: seconds * 1000.0,
                start_ms: Some(0.0),
                end_ms: Some(seconds * 1000.0),
                error: None,
            })
            .collect(),
        image: None,
        proxy: ProxyRecord { requests, ..Default::default() },
        build_args: Default::default(),
        notes: vec![],
        network: "loopback".into(),
        inspection: None,
    }
}
