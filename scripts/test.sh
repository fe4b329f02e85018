#!/usr/bin/env bash
# The test suite, on a fresh Debian machine: makes sure an engine runs, then
# runs every test. Tests that drive the real engine provision what they need
# (base images, module store, the owned Docker 26.1 engine `lbt-modern` the
# engine comparisons use) and run one at a time. So that a fresh machine does
# not wait twice, that provisioning starts in the background as soon as the
# layerbench binary is built, while the test binaries compile; the tests then
# find it done. The engine is stopped at the end, passed or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh
stop_modern() {
    if [ -x target/release/layerbench ] && target/release/layerbench engine ls 2>/dev/null | grep -q '^lbt-modern '; then
        target/release/layerbench engine stop --name lbt-modern >/dev/null || echo "test.sh: could not stop the engine lbt-modern" >&2
    fi
}
trap stop_modern EXIT

# The offline tests' build makes the layerbench binary with the features the tests build it with (a plain
# `cargo build` unifies fewer dev-dependency features, so the test build would compile it again).
cargo test --release --locked --no-run --test offline
# A copy: the test build may link target/release/layerbench again while this one runs.
cp target/release/layerbench target/provision-layerbench
lb=target/provision-layerbench
log=target/test-provision.log
provision() {
    "$lb" setup
    # The engine the tests compare with the host's, as tests/common/mod.rs starts it (unless left out).
    case ",${LAYERBENCH_TEST_ENGINES:-default,modern}," in
        *,modern,*)
            if ! "$lb" engine ls 2>/dev/null | grep -q '^lbt-modern '; then
                "$lb" engine start --name lbt-modern --release trixie \
                    --image-store "${LAYERBENCH_TEST_MODERN_STORE:-graphdriver}"
            fi
            ;;
    esac
}
echo "test.sh: provisioning in the background while the tests compile (log: $log)" >&2
provision >"$log" 2>&1 &
provisioning=$!
compiled=0
cargo test --release --locked --no-run || compiled=$?
if ! wait "$provisioning"; then
    echo "test.sh: provisioning failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
[ "$compiled" = 0 ] || exit "$compiled"
cargo test --release --locked -- --test-threads=1
