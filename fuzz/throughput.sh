#!/usr/bin/env bash
# Programs per second of the cargo-fuzz target `model` under several
# cargo-fuzz build configurations, measured side by side in one run.
#
#   fuzz/throughput.sh [RUNS] [CORPUS_DIR]
#
# Every configuration is built first (each is a full rebuild, about a
# minute), then each binary runs RUNS libFuzzer executions (default 100000)
# from its own copy of the same starting corpus with the same -seed, one
# after the other, so that they meet the same machine. The starting corpus
# is CORPUS_DIR (raw inputs, e.g. fuzz/corpus/model after a long run) or,
# without it, the comment-free seeds of corpus/seeds/ as fuzz/README.md
# builds them. Reported: wall-clock programs/s (seed loading included) and
# the ratio to cargo-fuzz's defaults.
#
# Needs the nightly toolchain and cargo-fuzz (fuzz/README.md).
set -euo pipefail

runs=${1:-100000}
corpus=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z "$corpus" ]]; then
	cargo build -q --release -p harness --bin pinfuzz
	corpus=$work/seeds
	mkdir -p "$corpus"
	for f in corpus/seeds/*.ops; do
		grep -v '^#' "$f" >"$work/seed.ops"
		target/release/pinfuzz fmt --to-bytes "$corpus/$(basename "$f" .ops)" \
			"$work/seed.ops" >/dev/null
	done
fi
if [[ ! -d "$corpus" ]] || [[ -z "$(ls -A "$corpus")" ]]; then
	echo "throughput.sh: no inputs in corpus directory '$corpus'" >&2
	exit 1
fi

# name|cargo fuzz build flags
configs=(
	"defaults|"
	"-O|-O"
	"--no-trace-compares|--no-trace-compares"
	"-s none|-s none"
	"-s none --no-trace-compares|-s none --no-trace-compares"
	"-O -s none --no-trace-compares|-O -s none --no-trace-compares"
)
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')

for i in "${!configs[@]}"; do
	IFS='|' read -r name flags <<<"${configs[$i]}"
	echo "building: cargo +nightly fuzz build $flags model" >&2
	# shellcheck disable=SC2086 # flags are words
	if ! cargo +nightly fuzz build $flags model >"$work/build.log" 2>&1; then
		cat "$work/build.log" >&2
		echo "throughput.sh: the build with '$flags' failed (log above)" >&2
		exit 1
	fi
	cp "target/$triple/release/model" "$work/model-$i"
done

printf '%-34s %12s %10s\n' "configuration" "programs/s" "ratio"
base=
for i in "${!configs[@]}"; do
	IFS='|' read -r name _ <<<"${configs[$i]}"
	rm -rf "$work/run"
	cp -r "$corpus" "$work/run"
	start=$(date +%s.%N)
	if ! "$work/model-$i" "$work/run" -seed=1 -runs="$runs" >"$work/run.log" 2>&1; then
		tail -40 "$work/run.log" >&2
		echo "throughput.sh: '$name' stopped early (a crash? log above)" >&2
		exit 1
	fi
	end=$(date +%s.%N)
	rate=$(awk -v n="$runs" -v a="$start" -v b="$end" 'BEGIN { print n / (b - a) }')
	base=${base:-$rate}
	printf '%-34s %12.0f %9.2fx\n' "$name" "$rate" \
		"$(awk -v r="$rate" -v b="$base" 'BEGIN { print r / b }')"
done
