#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine: engine, base images,
# module store, then the sample service built through BuildKit and its
# self-test run from the image. Extra arguments go to `layerbench selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh
cargo build --release --locked --quiet
exec target/release/layerbench selftest "$@"
