#!/usr/bin/env bash
# Check ci/oss-fuzz/build.sh on this machine, without Docker: run it with
# the environment the OSS-Fuzz / ClusterFuzzLite builder gives it, then do
# what the builder's check_build does with the result: every binary starts,
# is instrumented, and runs its seed corpus without a crash.
#
#   ci/oss-fuzz/check-build.sh [WORKDIR]     (default target/oss-fuzz)
#
# SANITIZER=coverage checks the coverage flavour (needs the builder's cargo
# wrapper, so only `address` is meaningful here). RUSTUP_TOOLCHAIN picks the
# nightly (default: nightly).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mkdir -p "${1:-$root/target/oss-fuzz}" && cd "${1:-$root/target/oss-fuzz}" && pwd)
export SRC=$work/src OUT=$work/out WORK=$work/work
export SANITIZER=${SANITIZER:-address} FUZZING_ENGINE=libfuzzer FUZZING_LANGUAGE=rust ARCHITECTURE=x86_64
# The builder's Rust flags (infra/base-images/base-builder/compile).
export RUSTFLAGS="--cfg fuzzing -Cdebuginfo=1 -Cforce-frame-pointers"
export RUSTUP_TOOLCHAIN=${RUSTUP_TOOLCHAIN:-nightly}
# Its own target directory: these flags must not invalidate other builds.
export CARGO_TARGET_DIR=$work/target
export PINFUZZ_SRC=$root
rm -rf "$OUT" "$WORK"
mkdir -p "$SRC" "$OUT" "$WORK"
echo "=== build.sh (SANITIZER=$SANITIZER, RUSTFLAGS=$RUSTFLAGS)"
bash "$root/ci/oss-fuzz/build.sh"
echo "=== \$OUT"
ls -l "$OUT"
for t in model text_roundtrip; do
	bin=$OUT/$t
	[[ -x $bin ]] || { echo "check-build: $bin is missing" >&2; exit 1; }
	grep -q . "$OUT/$t.options" || { echo "check-build: $t.options is empty" >&2; exit 1; }
	seeds=$WORK/check-$t
	rm -rf "$seeds"
	mkdir -p "$seeds"
	unzip -q "$OUT/${t}_seed_corpus.zip" -d "$seeds"
	n=$(find "$seeds" -type f | wc -l)
	((n > 0)) || { echo "check-build: ${t}_seed_corpus.zip is empty" >&2; exit 1; }
	# -runs=0 over a directory: every seed once, nothing new.
	log=$WORK/check-$t.log
	find "$seeds" -type f -print0 | xargs -0 "$bin" -runs=0 >"$log" 2>&1 ||
		{ tail -30 "$log"; echo "check-build: $t failed on its seeds" >&2; exit 1; }
	grep -q "inline 8-bit counters" "$log" ||
		{ echo "check-build: $t is not instrumented" >&2; exit 1; }
	# A short fuzzing run from the seeds, as the builder's check does.
	"$bin" -max_total_time=10 -timeout=25 "$seeds" >"$log.fuzz" 2>&1 ||
		{ tail -30 "$log.fuzz"; echo "check-build: $t crashed in 10 s of fuzzing" >&2; exit 1; }
	echo "check-build: $t ok: $n seeds, $(grep -o 'Done [0-9]* runs' "$log.fuzz" || echo '?')"
done
echo "check-build: ok"
