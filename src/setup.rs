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
    #[error(transparent)]
    Layout(#[from] crate::goproxy::layout::LayoutError),
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

/// Which module store a run serves.
#[derive(Debug, Clone)]
pub enum StoreSpec {
    /// Built from a recipe into `out` (reused when complete and from the same recipe).
    Recipe { recipe: Recipe, out: PathBuf },
    /// A GOPROXY-layout folder the user made; it is only checked, never written.
    Existing(PathBuf),
}

impl StoreSpec {
    /// The built-in recipe in the default store folder.
    pub fn default_store(store: &Path) -> StoreSpec {
        StoreSpec::Recipe { recipe: Recipe::default_recipe(), out: store.to_path_buf() }
    }

    /// A recipe file's store: its own folder below the cache, named by the recipe's fingerprint, so it never overwrites the default store.
    pub fn from_recipe_file(path: &Path, cache: &Path) -> Result<StoreSpec, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
            action: "read the recipe",
            path: path.to_path_buf(),
            source,
        })?;
        let recipe = Recipe::parse(&text, &path.display().to_string())?;
        let out = recipe_store_dir(&recipe, cache);
        Ok(StoreSpec::Recipe { recipe, out })
    }

    pub fn path(&self) -> &Path {
        match self {
            StoreSpec::Recipe { out, .. } => out,
            StoreSpec::Existing(p) => p,
        }
    }
}

/// Where the store of a recipe other than the built-in one lives.
pub fn recipe_store_dir(recipe: &Recipe, cache: &Path) -> PathBuf {
    let fp = recipe.fingerprint();
    cache.join("stores").join(&fp[..fp.len().min(16)])
}

/// Checks a store the user gave, or builds one from a recipe.
pub fn ensure_store_spec(spec: &StoreSpec, mirror: &str, cache: &Path) -> Result<StoreStatus, SetupError> {
    match spec {
        StoreSpec::Recipe { recipe, out } => Ok(ensure_store(recipe, mirror, cache, out, false)?),
        StoreSpec::Existing(dir) => {
            let started = Instant::now();
            let modules = StoreLayout::new(dir).validate()?;
            Ok(StoreStatus {
                path: dir.clone(),
                action: "given".into(),
                modules: modules.len(),
                versions: modules.iter().map(|m| m.versions.len()).sum(),
                zip_bytes: 0,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
    }
}

/// Everything `layerbench setup` provisions.
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    pub engine: crate::engine::EngineVersion,
    pub machine: crate::engine::Machine,
    pub base_images: Vec<BaseImage>,
    pub store: StoreStatus,
}

/// Connects to the engine, ensures the base images and the built-in module store.
pub async fn provision(pull: bool, cache: &Path, store: &Path, mirror: &str) -> Result<(Engine, Provisioned), SetupError> {
    provision_with(pull, cache, &StoreSpec::default_store(store), mirror).await
}

/// Connects to the engine, ensures the base images and the module store `spec` names.
pub async fn provision_with(pull: bool, cache: &Path, spec: &StoreSpec, mirror: &str) -> Result<(Engine, Provisioned), SetupError> {
    let engine = Engine::connect().await?;
    let provisioned = provision_on(&engine, pull, cache, spec, mirror).await?;
    Ok((engine, provisioned))
}

/// Ensures the base images in `engine` and the module store `spec` names.
pub async fn provision_on(engine: &Engine, pull: bool, cache: &Path, spec: &StoreSpec, mirror: &str) -> Result<Provisioned, SetupError> {
    let base_images = ensure_base_images(engine, pull, cache, mirror).await?;
    let (cache, spec, mirror) = (cache.to_path_buf(), spec.clone(), mirror.to_string());
    let store = tokio::task::spawn_blocking(move || ensure_store_spec(&spec, &mirror, &cache))
        .await
        .expect("the store task does not panic")?;
    let version = engine.version.clone();
    let machine = engine.machine().await?;
    Ok(Provisioned {
        engine: version,
        machine,
        base_images,
        store,
    })
}
