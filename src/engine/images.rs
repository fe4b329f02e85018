//! Images: inspecting, pulling, importing, tagging, removing and exporting them.

use std::collections::BTreeMap;
use std::path::Path;

use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::{api, owned, Engine, EngineError, EXPORT_TIMEOUT};

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

impl Engine {
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

    /// On an engine layerbench owns, adds the image `id` to the base images [`Engine::empty`] keeps (a stand-in made
    /// after `engine start`); elsewhere nothing.
    pub fn keep_as_base_image(&self, id: &str) -> Result<(), EngineError> {
        match &self.owned_in {
            Some(engines) => Ok(owned::add_base_image(engines, &self.name, id)?),
            None => Ok(()),
        }
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
