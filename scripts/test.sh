#!/usr/bin/env bash
# The test suite, on a fresh Debian machine: makes sure an engine runs, then
# runs every test. Tests that drive the real engine provision what they need
# (base images, module store, the owned Docker 26.1 engine `lbt-modern` the
# engine comparisons use) and run one at a time. So that a fresh machine does
# not wait twice, that provisioning starts in the background as soon as the
# layerbench binary is built, while the test binaries compile; the tests then
# find it done. The engine is stopped at the end, passed, failed or interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh

# The engines layerbench owns, as `engine ls` lists them; never failing, since a `grep -q` that stops reading at
# its match makes the listing's next write fail, which under pipefail would fail the whole pipe.
owned_engines() { "$1" engine ls 2>/dev/null || true; }
provisioning=
stop_modern() {
    if [ -n "$provisioning" ]; then
        kill -- "-$provisioning" 2>/dev/null || true
        wait "$provisioning" 2>/dev/null || true
    fi
    if [ -x target/ci/layerbench ] && owned_engines target/ci/layerbench | grep -q '^lbt-modern '; then
        target/ci/layerbench engine stop --name lbt-modern >/dev/null || echo "test.sh: could not stop the engine lbt-modern" >&2
    fi
}
trap stop_modern EXIT

# The offline tests' build makes the layerbench binary with the features the tests build it with (a plain
# `cargo build` unifies fewer dev-dependency features, so the test build would compile it again).
cargo test --profile ci --locked --no-run --test offline
# A copy: the test build may link target/ci/layerbench again while this one runs.
cp target/ci/layerbench target/provision-layerbench
log=target/test-provision.log
provision() {
    local lb=target/provision-layerbench
    "$lb" setup
    # The engine the tests compare with the host's, as tests/common/mod.rs's modern_engine() wants it: running,
    # on trixie, with the image store LAYERBENCH_TEST_MODERN_STORE names (containerd, else graphdriver).
    case ",${LAYERBENCH_TEST_ENGINES:-default,modern}," in
        *,modern,*) ;;
        *) return 0 ;;
    esac
    local store=graphdriver
    [ "${LAYERBENCH_TEST_MODERN_STORE:-}" = containerd ] && store=containerd
    if owned_engines "$lb" | awk -v s="$store" '$1 == "lbt-modern" && $2 == "running" && $3 == "trixie" && $7 == s { found = 1 } END { exit !found }'; then
        return 0
    fi
    if owned_engines "$lb" | grep -q '^lbt-modern '; then
        "$lb" engine stop --name lbt-modern
    fi
    "$lb" engine start --name lbt-modern --release trixie --image-store "$store"
}
echo "test.sh: provisioning in the background while the tests compile (log: $log)" >&2
# A process group of its own, so that an interrupt stops all of it.
set -m
provision >"$log" 2>&1 &
provisioning=$!
set +m
compiled=0
cargo test --profile ci --locked --no-run || compiled=$?
if ! wait "$provisioning"; then
    provisioning=
    echo "test.sh: provisioning failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
provisioning=
[ "$compiled" = 0 ] || exit "$compiled"
cargo test --profile ci --locked -- --test-threads=1
