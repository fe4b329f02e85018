//! `layerbench engine start|ls|stop`: the engines layerbench owns.

use anyhow::{Context, Result};

use crate::cli::EngineCommand;
use crate::cli::short;
use crate::engine::owned::{self, Liveness};
use crate::engine::Engine;
use crate::paths;


/// `layerbench engine start|ls|stop`: the engines layerbench owns.
pub(super) async fn engine_command(command: EngineCommand, cache: &std::path::Path, mirror: &str) -> Result<bool> {
    let engines = paths::engines_dir();
    match command {
        EngineCommand::Start { name, release, image_store } => {
            let options = owned::StartOptions { release, image_store };
            let state = owned::start_dockerd(&engines, &name, &options, cache, mirror).await?;
            let connected = Engine::connect_spec(&name).await;
            println!(
                "engine {name}: dockerd {}(pid {}) answers on {}; {} image store; data root {}, log {}",
                connected.as_ref().map_or(String::new(), |e| format!("{} (API {}, {}) ", e.version.engine, e.version.api, state.release)),
                state.pid.unwrap_or_default(),
                state.socket.display(),
                state.image_store.as_str(),
                state.data_root.display(),
                state.log.display()
            );
            let loaded = match connected {
                Ok(engine) => crate::images::ensure_base_images(&engine, false, cache, mirror).await.map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            let images = match loaded {
                Ok(images) => images,
                Err(e) => {
                    // Nothing half-made is left running.
                    let _ = tokio::task::spawn_blocking({
                        let (engines, name) = (engines.clone(), name.clone());
                        move || owned::stop(&engines, &name, false)
                    })
                    .await;
                    return Err(e.context(format!("loading the base images into engine {name} failed; the engine was stopped")));
                }
            };
            for image in &images {
                println!("engine {name}: base image {} {} [{}] {}", image.name, short(&image.id), image.action, image.provenance);
            }
            owned::record_base_images(&engines, &name, images.iter().map(|i| i.id.clone()).collect())?;
            println!("use it:   layerbench run --engine {name} …   (or DOCKER_HOST={} /usr/bin/docker …)", state.docker_host());
            println!("empty it: layerbench clean --engine {name}");
            println!("stop it:  layerbench engine stop --name {name}   (--keep keeps its data root for a quicker start)");
            Ok(true)
        }
        EngineCommand::Ls => {
            let listed = owned::list(&engines)?;
            if listed.is_empty() {
                println!("layerbench owns no engines (none under {}); `layerbench engine start` starts one", engines.display());
                return Ok(true);
            }
            println!("{:<16} {:<9} {:<9} {:<14} {:<5} {:<8} {:<11} {:>6} {:>7}", "NAME", "STATE", "RELEASE", "DOCKER", "API", "BUILDKIT", "STORE", "IMAGES", "DISK");
            for e in listed {
                let release = e.state.as_ref().map_or("?", |s| s.release.as_str());
                let [mut docker, mut api, mut buildkit, mut store, mut images] = ["-".to_string(), "-".into(), "-".into(), "-".into(), "-".into()];
                if e.liveness == Liveness::Running {
                    if let Ok(engine) = Engine::connect_spec(&e.name).await {
                        docker = engine.version.engine.clone();
                        api = engine.version.api.clone();
                        // Debian's builds do not stamp BuildKit's version: the release's vendored one, marked `~`.
                        buildkit = crate::engine::release::vendored_buildkit(&docker).map_or("?".to_string(), |v| format!("~{v}"));
                        store = engine.machine().await.map_or("?".to_string(), |m| m.image_store);
                        images = engine.image_count().await.map_or_else(|_| "?".to_string(), |n| n.to_string());
                    }
                } else if let Some(state) = &e.state {
                    store = state.image_store.as_str().to_string();
                }
                println!(
                    "{:<16} {:<9} {:<9} {:<14} {:<5} {:<8} {:<11} {:>6} {:>5.1}GB",
                    e.name,
                    e.liveness.as_str(),
                    release,
                    docker,
                    api,
                    buildkit,
                    store,
                    images,
                    e.disk_bytes as f64 / 1e9
                );
                println!("  socket {}", e.socket.display());
            }
            println!("BUILDKIT: `~0.13` is the BuildKit the Docker release vendors (Debian's builds do not stamp it).");
            Ok(true)
        }
        EngineCommand::Stop { name, all, keep } => {
            let names = if all { owned::list(&engines)?.into_iter().map(|e| e.name).collect() } else { vec![name] };
            if names.is_empty() {
                println!("layerbench owns no engines: nothing to stop");
            }
            for name in names {
                let engines = engines.clone();
                let stopped = tokio::task::spawn_blocking(move || owned::stop(&engines, &name, keep)).await.context("the stop task failed")??;
                println!(
                    "engine {}: {}; {} helper processes and {} mounts cleared; {}",
                    stopped.name,
                    match (stopped.pid, stopped.killed) {
                        (Some(pid), false) => format!("dockerd (pid {pid}) stopped"),
                        (Some(pid), true) => format!("dockerd (pid {pid}) killed after it ignored SIGTERM"),
                        (None, _) => "no dockerd was running".to_string(),
                    },
                    stopped.helpers_stopped,
                    stopped.unmounted,
                    if stopped.kept_data { "data root kept" } else { "folder removed" }
                );
            }
            Ok(true)
        }
    }
}
