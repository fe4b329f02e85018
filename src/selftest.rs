//! The proof of life: build the sample service through BuildKit with the module proxy running, then run its self-test in a container with no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::context::{ContextError, ContextTransfer, IgnoreDialect};
use crate::engine::{BuildRequest, Builder, ContextSource, Engine, EngineError, StepReport};
use crate::goproxy::server::{ProxyConfig, ProxyError, ProxyRequest, ProxyServer};

/// The sample's Dockerfile that the self-test builds.
pub const SELFTEST_DOCKERFILE: &str = "dockerfiles/layered.Dockerfile";
pub const SELFTEST_TAG: &str = "layerbench/sample:selftest";

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Everything the self-test saw.
#[derive(Debug, Clone)]
pub struct SelftestReport {
    pub app: PathBuf,
    pub dockerfile: String,
    pub image_id: String,
    pub image_size_bytes: u64,
    pub image_user: String,
    pub build_seconds: f64,
    pub steps: Vec<StepReport>,
    pub proxy_requests: Vec<ProxyRequest>,
    pub exit_code: i64,
    pub output: String,
}

impl SelftestReport {
    pub fn proxy_misses(&self) -> Vec<&ProxyRequest> {
        self.proxy_requests.iter().filter(|r| r.is_miss()).collect()
    }

    pub fn runs_as_non_root(&self) -> bool {
        let user = self.image_user.split(':').next().unwrap_or("");
        !(user.is_empty() || user == "0" || user == "root")
    }

    /// The self-test printed its success line and exited 0.
    pub fn service_passed(&self) -> bool {
        self.exit_code == 0 && self.output.contains("selftest: ok")
    }

    /// Every check of the proof of life.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if !self.service_passed() {
            f.push(format!("the service's self-test exited {} with:\n{}", self.exit_code, self.output.trim()));
        }
        if !self.runs_as_non_root() {
            f.push(format!("the image runs as `{}`, not as a non-root user", self.image_user));
        }
        for miss in self.proxy_misses() {
            f.push(format!("the module proxy could not answer {} ({})", miss.path, miss.status));
        }
        f
    }
}

/// Builds `app/SELFTEST_DOCKERFILE` with BuildKit (network mode host, the
/// module proxy on loopback at `port`), then runs the image with argument
/// `selftest` in a container with no network.
pub async fn run_selftest(
    engine: &Engine,
    app: &Path,
    store: &Path,
    port: u16,
    no_cache: bool,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<SelftestReport, SelftestError> {
    let context = ContextSource::new(app, Path::new(SELFTEST_DOCKERFILE), Builder::Buildkit, IgnoreDialect::of_engine(&engine.version), ContextTransfer::Session)?;
    let proxy = ProxyServer::start(ProxyConfig::loopback(store, port)).await?;
    let mut build_args = BTreeMap::new();
    build_args.insert("GOPROXY".to_string(), proxy.url());
    build_args.insert("GOSUMDB".to_string(), "off".to_string());
    let mut labels = BTreeMap::new();
    labels.insert(crate::engine::KIND_LABEL.to_string(), "selftest".to_string());
    let what = format!("{} ({SELFTEST_DOCKERFILE})", app.display());
    let request = BuildRequest {
        what: what.clone(),
        context,
        tag: SELFTEST_TAG.to_string(),
        target: None,
        build_args,
        labels,
        network_mode: "host".to_string(),
        no_cache,
    };
    let built = engine.build(request, progress).await;
    let proxy_requests = proxy.log().snapshot();
    proxy.stop().await;
    let (image, steps, wall) = built?.into_image(&what)?;
    let run = engine
        .run_to_completion(SELFTEST_TAG, &["selftest"], "none", Duration::from_secs(60))
        .await?;
    Ok(SelftestReport {
        app: app.to_path_buf(),
        dockerfile: SELFTEST_DOCKERFILE.to_string(),
        image_id: image.id,
        image_size_bytes: image.size_bytes,
        image_user: image.user,
        build_seconds: wall.as_secs_f64(),
        steps,
        proxy_requests,
        exit_code: run.exit_code,
        output: run.output,
    })
}
