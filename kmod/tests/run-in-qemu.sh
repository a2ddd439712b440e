#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a kernel in QEMU (TCG) with the pinfuzz module and run tests in it.
#
#   run-in-qemu.sh [options] KERNEL_IMAGE KO_FILE
#
# Builds (static, with the host's gcc) the guest /init (guest_init.c),
# pinfuzz_test and ioctl_storm, and optionally the kernel's selftests
# gup_longterm, cow and gup_test from a kernel source tree; packs them with
# KO_FILE into a gzip'd newc initramfs; boots it; prints the console and
# saves it.  The guest runs the commands given with -c (default: the
# functional test) and powers off.
#
# Options:
#   -c CMD     a line for the guest's /run.conf (repeatable): a command,
#              "@insmod /pinfuzz.ko [PARAMS]", "@rmmod pinfuzz" or
#              "@timeout SECONDS".  Default: "/pinfuzz_test /pinfuzz.ko /selftests"
#   -f FILE    also put FILE (e.g. a static test binary) into the guest's /
#              (repeatable)
#   -s KSRC    kernel source tree to build tools/testing/selftests/mm/
#              {gup_longterm,cow,gup_test}.c from (into /selftests); also
#              checks kmod/gup_test_abi.h against KSRC/mm/gup_test.h
#   -m MB      guest memory (default 1024)
#   -t SECONDS wall-clock limit for QEMU (default 3600)
#   -a ARGS    extra kernel command line
#   -l FILE    save the console log there (default WORKDIR/console.log)
#   -w DIR     work directory (default: a new temporary one, removed at
#              the end unless -k)
#   -k         keep the work directory
#
# Exit status: 0 if the guest ran every command, every command exited 0 and
# the console shows no WARNING, BUG, Oops or panic; 1 otherwise; 2 on usage
# or build errors.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmds=()
files=()
ksrc=
mem=1024
limit=3600
append=
log=
work=
keep=0

usage() {
	sed -n '3,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d' >&2
	exit 2
}

while getopts "c:f:s:m:t:a:l:w:kh" opt; do
	case $opt in
	c) cmds+=("$OPTARG") ;;
	f) files+=("$OPTARG") ;;
	s) ksrc=$OPTARG ;;
	m) mem=$OPTARG ;;
	t) limit=$OPTARG ;;
	a) append=$OPTARG ;;
	l) log=$OPTARG ;;
	w) work=$OPTARG ;;
	k) keep=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
kernel=$1
ko=$2
[ -r "$kernel" ] || { echo "run-in-qemu: cannot read kernel image $kernel" >&2; exit 2; }
[ -r "$ko" ] || { echo "run-in-qemu: cannot read module $ko" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "run-in-qemu: qemu-system-x86_64 missing (apt-get install --no-install-recommends qemu-system-x86)" >&2; exit 2; }
[ ${#cmds[@]} -gt 0 ] || cmds=("/pinfuzz_test /pinfuzz.ko /selftests")

if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/pinfuzz-qemu.XXXXXX)
	[ $keep -eq 1 ] || trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
root=$work/root
rm -rf "$root"
mkdir -p "$root"/{dev,proc,sys,tmp,selftests}
log=${log:-$work/console.log}

cflags=(-static -O2 -Wall)
gcc "${cflags[@]}" -o "$root/init" "$here/guest_init.c"
gcc "${cflags[@]}" -o "$root/pinfuzz_test" "$here/pinfuzz_test.c"
gcc "${cflags[@]}" -o "$root/ioctl_storm" "$here/ioctl_storm.c"

if [ -n "$ksrc" ]; then
	mmdir=$ksrc/tools/testing/selftests/mm
	[ -d "$mmdir" ] || { echo "run-in-qemu: no $mmdir" >&2; exit 2; }
	# The selftests include "local_config.h" (written by their Makefile:
	# liburing or not); an empty one here means no io_uring cases.
	mkdir -p "$work/inc"
	: > "$work/inc/local_config.h"
	# The module's own copy of the gup_test ABI must match the kernel's.
	gcc -DUPSTREAM -I "$ksrc/mm" -c "$here/abi_check.c" -o "$work/abi_up.o"
	gcc -o "$work/abi_check" "$here/abi_check.c" "$work/abi_up.o"
	"$work/abi_check" >&2 || { echo "run-in-qemu: gup_test ABI mismatch" >&2; exit 2; }
	for t in gup_longterm cow gup_test; do
		(cd "$mmdir" && gcc -static -O2 -I "$work/inc" -I . -I .. \
			-I ../../../.. -I ../../../../tools/include/uapi \
			-o "$root/selftests/$t" $t.c vm_util.c thp_settings.c \
			-lrt -lpthread -lm)
	done
fi

cp "$ko" "$root/pinfuzz.ko"
for f in ${files[@]+"${files[@]}"}; do
	cp "$f" "$root/"
done
printf '%s\n' "${cmds[@]}" > "$root/run.conf"
# The kernel opens /dev/console on the initramfs for init's stdio.
mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$work/initrd.gz"

echo "run-in-qemu: booting $kernel (initramfs $(du -h "$work/initrd.gz" | cut -f1))" >&2
start=$(date +%s)
set +e
timeout --foreground "$limit" qemu-system-x86_64 -accel tcg -cpu max -smp 1 \
	-m "$mem" -nographic -no-reboot -kernel "$kernel" \
	-initrd "$work/initrd.gz" \
	-append "console=ttyS0 loglevel=7 panic=-1 $append" </dev/null |
	tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
echo "run-in-qemu: QEMU exited $qemu_rc after $(( $(date +%s) - start )) s; console in $log" >&2

# Strip the serial line's carriage returns before matching.
clean=$(tr -d '\r' < "$log")
status=0
if ! grep -q '^PINFUZZ-GUEST: done' <<<"$clean"; then
	echo "run-in-qemu: the guest did not finish" >&2
	status=1
fi
if grep '^PINFUZZ-GUEST: exit [^0]' <<<"$clean" >&2; then
	echo "run-in-qemu: a guest command failed" >&2
	status=1
fi
if grep -E 'WARNING:|BUG:|Oops|general protection fault|Kernel panic|kernel BUG|Call Trace' <<<"$clean" >&2; then
	echo "run-in-qemu: the console shows a kernel warning or crash" >&2
	status=1
fi
[ $status -eq 0 ] && echo "run-in-qemu: all guest commands passed, console clean" >&2
[ $keep -eq 1 ] && echo "run-in-qemu: work directory $work" >&2
exit $status
