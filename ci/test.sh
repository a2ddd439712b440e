#!/usr/bin/env bash
# The test suite. Without arguments: everything, including the kernel side
# for real (both Debian kernels in QEMU guests). `--quick`: only what needs
# no VM. Each stage prints a banner; a failing stage says which, and why.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ ${1:-} == --quick ]] && quick=1

stage=""
started=$SECONDS
begin() {
	stage=$1
	echo
	echo "=== [$((SECONDS - started))s] $stage"
}
trap 'rc=$?; if ((rc)); then echo; echo "ci/test.sh: FAILED in stage \"$stage\" (exit $rc) after $((SECONDS - started))s" >&2; fi' EXIT

begin "setup"
ci/setup.sh

begin "format (cargo fmt --check)"
cargo fmt --all -- --check

begin "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

begin "unit, property and corpus tests (cargo test --workspace)"
cargo test --workspace

if ((quick)); then
	echo "ci/test.sh: quick tests passed in $((SECONDS - started))s"
	exit 0
fi

begin "build (release)"
cargo build --release --bin pinfuzz
pinfuzz=target/release/pinfuzz

begin "kernels: fetch both Debian kernels and build the module for each"
$pinfuzz kernel fetch debian-6.12
$pinfuzz kernel fetch debian-6.1
$pinfuzz kernel list

begin "guest tests: boot, channel, smoke program, kill -9 and panic recovery, executor checks, C reproducers"
cargo test --release -p harness --test vm_guest --test exec_guest --test vm_console --test creproducer_guest -- --ignored --test-threads 1

for k in debian-6.12 debian-6.1; do
	begin "seed corpus and regressions, differentially, on $k"
	$pinfuzz check --kernel "$k" corpus/
done

begin "selfcheck: every fault-injection mode of the helper module is caught"
$pinfuzz selfcheck --time-per-mode 60s --findings target/ci/selfcheck

# The 1 GiB hugetlb cases alone take ~10 minutes under TCG (29 s each):
# CI runs everything else; docs/selftests.md has the full runs.
begin "the kernel's own GUP selftests in the guest (default kernel, no 1 GiB hugetlb pages)"
$pinfuzz selftests --hugetlb-1g 0

begin "nightly, short budget"
ci/nightly --budget 90 --out target/ci/nightly

echo
echo "ci/test.sh: all tests passed in $((SECONDS - started))s"
