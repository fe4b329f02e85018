//! Cleanup: emptying an owned engine and removing what carries layerbench's label.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};

use super::{api, owned, Engine, EngineError, KIND_LABEL, MANAGED_LABEL, RUN_LABEL};

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

impl Engine {
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
