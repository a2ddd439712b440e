#!/usr/bin/env bash
# Install what pinfuzz needs on a Debian 12 machine, idempotently:
# QEMU (and its qboot firmware), the tools the kernel module build and the
# initramfs need, and the Rust components the checks use. Root is needed
# only for apt; a machine that already has everything needs nothing.
set -euo pipefail

packages=(
	qemu-system-x86   # the guest
	qemu-system-data  # qboot.rom: fast firmware for direct kernel boot
	dwarves           # pahole: Debian 6.12 headers generate module BTF
	cpio xz-utils zstd
	gcc make libc6-dev # module build, static C baselines and reproducers
	ca-certificates
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "ci/setup.sh: installing ${missing[*]}"
	if [[ $(id -u) -ne 0 ]]; then
		echo "ci/setup.sh: need root to apt-get install ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Kernel package lists: provisioning resolves the newest Debian kernels with
# apt-cache, which needs package lists.
if ! apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' | grep -q .; then
	if [[ $(id -u) -eq 0 ]]; then
		apt-get update -qq
	else
		echo "ci/setup.sh: apt package lists have no Debian kernels: run apt-get update as root" >&2
		exit 1
	fi
fi

command -v cargo >/dev/null || { echo "ci/setup.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# The fuzzing front ends (ci/nightly, docs/fuzzing.md): cargo-fuzz runs on
# the nightly toolchain (sanitizers, -Z flags); cargo-afl builds the AFL++
# runtime once per machine. Both are crates.io installs, no root needed.
# The main job (ci/fuzz.sh) needs neither: PINFUZZ_SETUP_FUZZERS=0.
if [[ ${PINFUZZ_SETUP_FUZZERS:-1} == 0 ]]; then
	echo "ci/setup.sh: ok (fuzzing front ends not checked)"
	exit 0
fi
if ! rustup toolchain list | grep -q '^nightly'; then
	rustup toolchain install nightly --profile minimal ||
		{ echo "ci/setup.sh: no nightly Rust toolchain and none can be installed (cargo fuzz needs it)" >&2; exit 1; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "ci/setup.sh: installing cargo-fuzz"
	cargo install cargo-fuzz --locked -q || { echo "ci/setup.sh: cargo install cargo-fuzz failed" >&2; exit 1; }
fi
if ! cargo afl --version >/dev/null 2>&1; then
	echo "ci/setup.sh: installing cargo-afl and building the AFL++ runtime"
	{ cargo install cargo-afl --locked -q && cargo afl config --build --force >/dev/null; } ||
		{ echo "ci/setup.sh: cargo-afl install or 'cargo afl config --build' failed" >&2; exit 1; }
fi
echo "ci/setup.sh: ok"
