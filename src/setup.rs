//! Provisioning: the engine check, base images and module store, each reused when already in place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::engine::{Engine, EngineError};
use crate::goproxy::layout::StoreLayout;
use crate::goproxy::store::{build_store, Recipe, StoreError, StoreReport};
use crate::images::{ensure_base_images, BaseImage, ImageError};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the store step did.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub path: PathBuf,
    /// `reused` or `built`.
    pub action: String,
    pub modules: usize,
    pub versions: usize,
    pub zip_bytes: u64,
    pub seconds: f64,
}

/// Builds the module store unless a complete one made from the same recipe is already there.
pub fn ensure_store(recipe: &Recipe, mirror: &str, cache: &Path, store: &Path, force: bool) -> Result<StoreStatus, StoreError> {
    let started = Instant::now();
    let existing = StoreReport::read(store).filter(|r| r.recipe_fingerprint == recipe.fingerprint());
    let valid = StoreLayout::new(store).validate().is_ok();
    let (action, report) = match existing {
        Some(report) if valid && !force => ("reused", report),
        _ => {
            eprintln!("module store: building {} from Debian packages", store.display());
            ("built", build_store(recipe, mirror, cache, store)?)
        }
    };
    let modules = report
        .modules
        .iter()
        .map(|m| m.module.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(StoreStatus {
        path: store.to_path_buf(),
        action: action.to_string(),
        modules,
        versions: report.modules.len(),
        zip_bytes: report.modules.iter().map(|m| m.zip_bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Everything `layerbench setup` provisions.
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    pub engine: crate::engine::EngineVersion,
    pub machine: crate::engine::Machine,
    pub base_images: Vec<BaseImage>,
    pub store: StoreStatus,
}

/// Connects to the engine, ensures the base images and the module store.
pub async fn provision(pull: bool, cache: &Path, store: &Path, mirror: &str) -> Result<(Engine, Provisioned), SetupError> {
    let engine = Engine::connect().await?;
    let base_images = ensure_base_images(&engine, pull, cache, mirror).await?;
    let recipe = Recipe::default_recipe();
    let (cache, store, mirror) = (cache.to_path_buf(), store.to_path_buf(), mirror.to_string());
    let store = tokio::task::spawn_blocking(move || ensure_store(&recipe, &mirror, &cache, &store, false))
        .await
        .expect("the store task does not panic")?;
    let version = engine.version.clone();
    let machine = engine.machine().await?;
    Ok((
        engine,
        Provisioned {
            engine: version,
            machine,
            base_images,
            store,
        },
    ))
}
