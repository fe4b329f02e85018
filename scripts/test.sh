#!/usr/bin/env bash
# The test suite, on a fresh Debian machine: makes sure an engine runs, then
# runs every test. Tests that drive the real engine provision what they need
# (base images, module store) themselves and run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh
cargo test --release --locked -- --test-threads=1
