#!/usr/bin/env bash
# The test suite, on a fresh Debian machine: makes sure an engine runs, then
# runs every test. Tests that drive the real engine provision what they need
# (base images, module store, the owned Docker 26.1 engine `lbt-modern` the
# engine comparisons use) themselves and run one at a time; that engine is
# stopped at the end, passed or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh
stop_modern() {
    if [ -x target/release/layerbench ] && target/release/layerbench engine ls 2>/dev/null | grep -q '^lbt-modern '; then
        target/release/layerbench engine stop --name lbt-modern >/dev/null || echo "test.sh: could not stop the engine lbt-modern" >&2
    fi
}
trap stop_modern EXIT
cargo test --release --locked -- --test-threads=1
