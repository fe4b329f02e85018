//! Containers: running an image to completion and reading a file out of one, in labelled containers.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, RemoveContainerOptions};
use futures_util::StreamExt;

use super::{api, Engine, EngineError, CALL_TIMEOUT, KIND_LABEL, MANAGED_LABEL, RUN_LABEL};

/// A container run to completion.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i64,
    pub output: String,
}

impl Engine {
    /// Runs `image` with `cmd` to completion in a labelled container with the
    /// given network mode, collects its output and removes it.
    pub async fn run_to_completion(
        &self,
        image: &str,
        cmd: &[&str],
        network_mode: &str,
        timeout: Duration,
    ) -> Result<RunOutcome, EngineError> {
        let cmd = (!cmd.is_empty()).then(|| cmd.iter().map(|s| s.to_string()).collect());
        let id = self.create_labelled_container(image, cmd, network_mode).await?;
        let result = self.start_and_wait(&id, image, timeout).await;
        let removed = self.remove_container(&id).await;
        let outcome = result?;
        removed?;
        Ok(outcome)
    }

    /// Reads one file out of an image, without running anything: a container
    /// is created (labelled, never started), the file is copied out, and the
    /// container is removed. `None` when the image has no such file.
    pub async fn read_file_from_image(&self, image: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
        // Scratch images have no default command; this one is never run.
        let id = self.create_labelled_container(image, Some(vec!["/layerbench-never-run".to_string()]), "none").await?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(&id, Some(options));
        let mut tar_bytes = Vec::new();
        let mut missing = false;
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next()).await.unwrap_or_else(|_| {
            Some(Err(bollard::errors::Error::IOError { err: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("copying {path} out took over {} s", CALL_TIMEOUT.as_secs())) }))
        }) {
            match chunk {
                Ok(b) => tar_bytes.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                    missing = true;
                    break;
                }
                Err(source) => {
                    let _ = self.remove_container(&id).await;
                    return Err(EngineError::Api {
                        action: format!("copy {path} out of {image}"),
                        source,
                    });
                }
            }
        }
        self.remove_container(&id).await?;
        if missing {
            return Ok(None);
        }
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let entries = archive.entries().map_err(|source| EngineError::Io {
            path: path.into(),
            source,
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| EngineError::Io { path: path.into(), source })?;
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(|source| EngineError::Io { path: path.into(), source })?;
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Creates (does not start) a container carrying layerbench's label; returns its id.
    async fn create_labelled_container(&self, image: &str, cmd: Option<Vec<String>>, network_mode: &str) -> Result<String, EngineError> {
        let mut labels = HashMap::new();
        labels.insert(MANAGED_LABEL.to_string(), "true".to_string());
        labels.insert(KIND_LABEL.to_string(), "run".to_string());
        if let Some(run) = &self.run {
            labels.insert(RUN_LABEL.to_string(), run.clone());
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd,
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(network_mode.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(api(format!("create a container from {image}")))?;
        Ok(created.id)
    }

    pub(super) async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(api(format!("remove container {id}")))
    }

    async fn start_and_wait(&self, id: &str, image: &str, timeout: Duration) -> Result<RunOutcome, EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(api(format!("start a container from {image}")))?;
        let mut wait = self.docker.wait_container(id, None);
        let exit_code = match tokio::time::timeout(timeout, wait.next()).await {
            Err(_) => {
                return Err(EngineError::Api {
                    action: format!("wait for the container from {image} (gave up after {timeout:?})"),
                    source: bollard::errors::Error::RequestTimeoutError,
                })
            }
            Ok(Some(Ok(r))) => r.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(source))) => {
                return Err(EngineError::Api {
                    action: format!("wait for the container from {image}"),
                    source,
                })
            }
            Ok(None) => -1,
        };
        let mut logs = self.docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        );
        let mut output = String::new();
        while let Some(item) = logs.next().await {
            let chunk = item.map_err(api(format!("read the logs of the container from {image}")))?;
            output.push_str(&chunk.to_string());
        }
        Ok(RunOutcome { exit_code, output })
    }
}
