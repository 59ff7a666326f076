#!/bin/bash
# numa-in-vm.sh - runs the placement tests on two emulated NUMA nodes: qemu (TCG) boots Debian's kernel
# with a busybox initramfs holding the tests linked statically; one TAP line per check, exit 0 only if all passed.
#
# This machine has one node, so interleave, bind, preferred, local and replicas are only really exercised
# here. The initramfs approach follows kmod-optional/test-in-vm.sh. Artifacts are cached in
# build-placement/vm/<hash of inputs>/, so a rerun only boots. Env: PLACEMENT_VM_TIMEOUT (s, default 100),
# PLACEMENT_KEEP_LOG=1 prints the console log.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=$top/build-placement/vm
vm_timeout=${PLACEMENT_VM_TIMEOUT:-100}
t_start=$(date +%s)
nfail=0
npass=0

ok() { echo "ok - $1"; npass=$((npass + 1)); }
notok() { echo "not ok - $1"; nfail=$((nfail + 1)); }
bail() {
	notok "$1"
	echo "# $npass passed, $nfail failed"
	exit 1
}

# --- 1. packages: install only what is missing ----------------------------------------------------
kver_of() { # newest Debian kernel image present
	local img
	img=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V -r | head -1)
	[ -n "$img" ] && echo "${img#/boot/vmlinuz-}"
}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
kver_of >/dev/null || missing+=(linux-image-amd64)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
for pair in libdw.a:libdw-dev libelf.a:libelf-dev liburing.a:liburing-dev libz.a:zlib1g-dev \
	liblzma.a:liblzma-dev libbz2.a:libbz2-dev; do
	[ -f "/usr/lib/x86_64-linux-gnu/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "# installing: ${missing[*]}"
	{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" >/dev/null; } || bail "install packages: ${missing[*]}"
fi
kver=$(kver_of) || bail "find a Debian kernel image in /boot"
ok "packages present (kernel $kver)"

# --- 2. build (cached by hash of every input) -----------------------------------------------------
lib_src=(region.c alloc.c seal.c stats.c placement.c trap.c audit.c tlog.c symbolize.c)
tests=(numa_policy numa_opts replica huge_pages)
key=$( (cd "$top/libeternal/src" && cat "${lib_src[@]}" ./*.h; cat "$top/libeternal/include/eternal.h"
	cd "$here" && cat ./*.c ./*.h numa-in-vm.sh; cat "$top/tests/common.c" "$top/tests/common.h"
	echo "$kver"; sha256sum /boot/vmlinuz-"$kver" /bin/busybox) | sha256sum | cut -c1-16)
out=$cache/$key
if [ ! -f "$out/initrd.gz" ]; then
	rm -rf "$out.tmp" && mkdir -p "$out.tmp/obj" || bail "create $out.tmp"
	cflags=(-O2 -g -Wall -Wextra -Werror -std=gnu11 -I"$top/libeternal/include" -I"$top/libeternal/src"
		-I"$top/tests" -fvisibility=hidden)
	libs=(-ldw -lelf -lz -llzma -lbz2 -luring -lnuma -lpthread)
	build() {
		local s
		for s in "${lib_src[@]}"; do
			gcc "${cflags[@]}" -c "$top/libeternal/src/$s" -o "$out.tmp/obj/${s%.c}.o" || return 1
		done
		ar rcs "$out.tmp/libeternal.a" "$out.tmp"/obj/*.o || return 1
		for s in "${tests[@]}"; do
			# libdw's debuginfod client warns that dlopen needs glibc at run time: it is never reached.
			gcc "${cflags[@]}" -static -o "$out.tmp/$s" "$here/$s.c" "$top/tests/common.c" \
				"$out.tmp/libeternal.a" "${libs[@]}" 2>&1 | grep -v "dlopen\|debuginfod" >&2
			[ -x "$out.tmp/$s" ] || return 1
		done
	}
	if ! build >"$out.tmp/build.log" 2>&1 || ! nice -n 10 true; then
		sed 's/^/# /' "$out.tmp/build.log"
		bail "build libeternal and the placement tests statically"
	fi
	root=$out.tmp/root
	mkdir -p "$root"/{bin,dev,proc,sys,tmp} || bail "initramfs dirs"
	cp /bin/busybox "$root/bin/busybox"
	for s in "${tests[@]}"; do cp "$out.tmp/$s" "$root/$s"; done
	cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# init - runs the placement tests on two NUMA nodes; TAP lines go to the serial console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
echo "BEGIN-PLACEMENT $(uname -r)"
echo "# nodes online: $(cat /sys/devices/system/node/online), cpus: node0 $(cat /sys/devices/system/node/node0/cpulist) node1 $(cat /sys/devices/system/node/node1/cpulist 2>/dev/null)"
run() { # run NAME PROGRAM ARGS...: one TAP line; the program's output as comments
	name=$1
	shift
	"$@" >/tmp/out 2>&1
	rc=$?
	if [ $rc = 0 ]; then echo "ok - $name"
	elif [ $rc = 77 ]; then echo "ok - $name # SKIP $(grep -m1 SKIP /tmp/out)"
	else echo "not ok - $name (exit $rc)"; fi
	sed 's/^# //; s/^/# /' /tmp/out
}
[ "$(cat /sys/devices/system/node/online)" = "0-1" ]; rc=$?
if [ $rc = 0 ]; then echo "ok - two NUMA nodes online"; else echo "not ok - two NUMA nodes online"; fi
for p in default interleave bind preferred local; do run "numa_policy $p" /numa_policy $p; done
run numa_opts /numa_opts
run "replicas, one worker per node" /replica
run "huge_pages fallback (empty pool)" /huge_pages fallback
echo 16 >/proc/sys/vm/nr_hugepages
echo "# huge pages: node0 $(cat /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages) node1 $(cat /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages)"
run "huge_pages interleaved over two nodes, sealed" /huge_pages active
run "huge_pages replicas, one per node, on huge pages" /huge_pages replica
run "huge_pages fork during warm-up gets a private view" /huge_pages fork-warmup
echo 4 >/proc/sys/vm/nr_hugepages
run "huge_pages pool exhausted: -ENOMEM, no SIGBUS" /huge_pages exhaust
echo "END-PLACEMENT"
poweroff -f
INIT
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$out.tmp/initrd.gz") || bail "pack initramfs"
	rm -rf "$out" && mv "$out.tmp" "$out" || bail "store build in $out"
	echo "# built in $(($(date +%s) - t_start)) s: $out"
else
	echo "# cached build: $out"
fi
ok "libeternal and placement tests built statically"

# --- 3. boot: two nodes of 512 MiB, one CPU each ---------------------------------------------------
log=$cache/last-console.log
t_boot=$(date +%s)
timeout -k 5 "$vm_timeout" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1G \
	-object memory-backend-ram,id=m0,size=512M -object memory-backend-ram,id=m1,size=512M \
	-numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 \
	-nographic -no-reboot -nic none -monitor none -serial stdio \
	-kernel "/boot/vmlinuz-$kver" -initrd "$out/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null 2>&1 |
	sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' >"$log"
qrc=${PIPESTATUS[0]}
echo "# vm ran $(($(date +%s) - t_boot)) s, qemu exit $qrc, console log: $log"
[ "${PLACEMENT_KEEP_LOG:-0}" = 1 ] && sed 's/^/# console: /' "$log"
if ! grep -q '^END-PLACEMENT' "$log"; then
	tail -30 "$log" | sed 's/^/# console: /'
	bail "VM ran the whole test sequence within ${vm_timeout}s (qemu exit $qrc)"
fi
ok "VM booted and ran the whole test sequence"

# --- 4. results: every TAP line between the markers, counted here --------------------------------
while IFS= read -r line; do
	case $line in
	"ok - "*) ok "vm: ${line#ok - }" ;;
	"not ok - "*) notok "vm: ${line#not ok - }" ;;
	"# "*) echo "# vm: ${line#\# }" ;;
	esac
done < <(sed -n '/BEGIN-PLACEMENT/,/^END-PLACEMENT/p' "$log") # BEGIN may follow the BIOS's text on its line

# Keep only this build in the cache.
for d in "$cache"/*/; do
	d=${d%/}
	[ "$d" = "$out" ] || [ ! -f "$d/initrd.gz" ] || rm -rf "$d"
done
total=$(($(date +%s) - t_start))
if [ "$total" -lt 120 ]; then ok "whole run under 2 minutes (${total}s)"; else notok "whole run under 2 minutes (${total}s)"; fi
echo "# $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
