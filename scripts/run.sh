#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine: engine, base images and
# module store (all made locally), then the `quick` suite: three templates of
# the bundled sample rebuilt after a .go edit. It prints what each template
# re-ran, the modules it fetched again, the rebuild times side by side, the
# claim verdicts those builds settle and where the report and charts are, and
# ends with the run's time outside builds.
# Extra arguments go to `layerbench run` (for example `--out DIR`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-engine.sh
cargo build --release --locked --quiet
exec target/release/layerbench run --suite quick "$@"
