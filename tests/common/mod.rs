//! Shared set-up for the tests that drive the real engine: one at a time, on a provisioned machine.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use layerbench::engine::Engine;
use layerbench::{paths, setup};

static ENGINE: Mutex<()> = Mutex::new(());

/// Serialises the tests of one binary that use the engine (two cores, one daemon).
pub fn engine_lock() -> MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connects and provisions base images and the module store (a no-op when present).
pub async fn provisioned() -> (Engine, PathBuf) {
    let store = paths::store_dir();
    let (engine, _) = setup::provision(false, &paths::cache_dir(), &store, &paths::debian_mirror())
        .await
        .unwrap_or_else(|e| panic!("provisioning failed: {e}"));
    (engine, store)
}

/// `module version` pairs of a go.sum: (module, version, is_go_mod_hash).
pub fn go_sum_entries(text: &str) -> Vec<(String, String, bool)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let module = parts.next()?.to_string();
            let version = parts.next()?;
            Some(match version.strip_suffix("/go.mod") {
                Some(v) => (module, v.to_string(), true),
                None => (module, version.to_string(), false),
            })
        })
        .collect()
}
