#!/bin/bash -eu
# OSS-Fuzz / ClusterFuzzLite build of pinfuzz's model-only fuzz targets.
#
# Builders have no VMs (no KVM, no privileged containers), so only the
# targets that need no kernel are built: `model` (programs on the reference
# model of every kernel profile, invariants after every step) and
# `text_roundtrip` (byte codec and text format properties). The `diff`
# target boots a QEMU guest and runs in the project's own nightly instead
# (ci/nightly, docs/fuzzing.md).
#
# Inputs (set by the builder image): SRC, OUT, WORK, SANITIZER (address or
# coverage), RUSTFLAGS (--cfg fuzzing -Cdebuginfo=1 -Cforce-frame-pointers).
# Outputs in $OUT: the two binaries, <target>_seed_corpus.zip from the text
# seeds, <target>.options.
#
# Local check (no Docker): ci/oss-fuzz/check-build.sh runs this script with
# the builder's environment on this machine.

# The builder runs `bash build.sh`, which ignores the -eu of the #! line.
set -eu
cd "${PINFUZZ_SRC:-$SRC/pinfuzz}"
targets=(model text_roundtrip)

# -O: release; --debug-assertions: overflow checks and debug asserts are
# bugs to find. cargo-fuzz adds -Zsanitizer=address and the coverage
# instrumentation (the builder's cargo wrapper turns this into a plain
# `cargo build --bins` for SANITIZER=coverage). cargo fuzz builds one
# target per call.
for t in "${targets[@]}"; do
	cargo fuzz build -O --debug-assertions "$t"
done

# fuzz/ is a member of the top workspace: its binaries are in the
# workspace's target directory, not fuzz/target.
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
for t in "${targets[@]}"; do
	cp "$target_dir/x86_64-unknown-linux-gnu/release/$t" "$OUT/"
done

# Seed corpora. The text seeds become codec bytes with `pinfuzz fmt
# --to-bytes` (the stable byte codec of docs/program-format.md), comments
# dropped first: the codec would carry them as bytes mutations only waste
# time on. pinfuzz is a host tool: built without the fuzzing flags, in its
# own target directory.
env -u RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
	cargo build --release --bin pinfuzz --target-dir "$WORK/pinfuzz-host"
pinfuzz="$WORK/pinfuzz-host/release/pinfuzz"
seeds="$WORK/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/text" "$seeds/bytes"
for f in corpus/seeds/*.ops corpus/regressions/*.ops; do
	[ -f "$f" ] || continue
	n=$(basename "$(dirname "$f")")-$(basename "$f" .ops)
	grep -v '^[[:space:]]*#' "$f" >"$seeds/text/$n.ops"
	"$pinfuzz" fmt --to-bytes "$seeds/bytes/$n" "$seeds/text/$n.ops" 2>/dev/null
done
# model: programs as codec bytes. text_roundtrip takes both forms (its
# input is read as codec bytes and as text).
(cd "$seeds/bytes" && zip -q -r "$OUT/model_seed_corpus.zip" .)
(cd "$seeds" && zip -q -r "$OUT/text_roundtrip_seed_corpus.zip" bytes text)

# A model input runs in milliseconds; the default 1200 s would hide a hang.
for t in "${targets[@]}"; do
	printf '[libfuzzer]\ntimeout = 25\nmax_len = 4096\n' >"$OUT/$t.options"
done
