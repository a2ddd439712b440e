#!/usr/bin/env bash
# The main job: a short differential fuzz run against the default kernel
# (Debian 6.12) in a QEMU guest. Installs what is missing (ci/setup.sh),
# builds pinfuzz, then `pinfuzz fuzz` fetches the kernel and builds the
# helper module and the guest by itself. Arguments go to `pinfuzz fuzz`
# (default: --time 5m). Exit status: 0 = no finding, 1 = findings (see
# ./findings), 2 = pinfuzz could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
PINFUZZ_SETUP_FUZZERS=0 ci/setup.sh
cargo build --release --bin pinfuzz
args=("$@")
((${#args[@]})) || args=(--time 5m)
exec target/release/pinfuzz fuzz "${args[@]}"
