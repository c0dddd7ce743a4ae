#!/usr/bin/env bash
# ARM checks under qemu-user (`make test-arm`, part of `make test`). Needs the
# binaries of `make cross` in $BIN/linux-{arm,arm64}/ and the packages of
# `make deps` (qemu-user, the cross compilers, swtpm, softhsm2).
#
# For linux/arm64 and linux/arm (GOARM=7), each under qemu-aarch64 / qemu-arm:
#   1. thingd version prints $VERSION and the architecture; thingsim starts.
#   2. thingd key generate / info / csr with a file: key; the CSR is checked by
#      the host's openssl.
#   3. thingd key generate / info / csr with a SoftHSM key: the cgo PKCS#11
#      path of the ARM thingd loading Debian's ARM libsofthsm2.
#   4. keystore/tpmstore's swtpm tests (the conformance suite over swtpm's
#      unix socket, the TCP transport, restarts, lockout, tpm2-tools): the
#      pure-Go TPM path, test binary built with CGO_ENABLED=0, against a swtpm
#      on the host.
#   5. every keystore/p11store test (conformance suite included) against
#      Debian's ARM libsofthsm2 (test binary built with cgo and the cross
#      compiler).
#   6. End to end, both programs ARM: thingsim (the local AWS IoT Core) issues
#      a certificate for the SoftHSM key of step 3, thingd connects with mutual
#      TLS (signing inside the ARM SoftHSM), reports connected in thingd
#      status, rotates its certificate on a job, and stops cleanly on SIGTERM.
#
# How: qemu-user runs the ARM programs; `-L SYSROOT` makes the emulated
# program see SYSROOT/PATH before PATH, so the dynamic loader, glibc and
# /usr/lib/softhsm/libsofthsm2.so come from Debian's armhf/arm64 packages
# (fetched with apt-get download and unpacked with dpkg-deb -x into
# $BIN/arm-sysroot/ARCH; libsofthsm2 is not Multi-Arch, so it cannot be
# installed next to the amd64 one). An emulated program that starts a host
# (x86-64) program -- the tests start swtpm, softhsm2-util, tpm2-tools and
# pkcs11-tool -- runs it natively: qemu-user hands execve to the kernel, so
# no binfmt_misc is needed.
#
# Tokens are initialised by the host's softhsm2-util (x86-64) and used by the
# ARM libsofthsm2: SoftHSM's file format is the same on all three.
#
# Not run under qemu: the tpmstore tests on go-tpm-tools' in-process TPM
# simulator (TestConformanceSimulator, TestRetry, ...). The simulator is C
# code that needs cgo and OpenSSL for the target; it is a test tool, not the
# production path, and the same suite runs on swtpm here.
#
# 32-bit SoftHSM under qemu on a 64-bit host sees no tokens in a directory on
# ext4 (64-bit readdir cookies overflow the 32-bit telldir), so the armhf
# tests keep their temporary directories (and so the token directories) on
# tmpfs (/dev/shm).
set -euo pipefail

BIN=${BIN:-bin}
VERSION=${VERSION:?VERSION must be set (make test-arm sets it)}
GO=${GO:-go}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BIN=$(cd "$BIN" && pwd)
LOG="$BIN/test-arm"
mkdir -p "$LOG"

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# Debian packages unpacked into each sysroot: the runtime of a cgo program
# and of libsofthsm2.
SYSROOT_PACKAGES="libc6 libgcc-s1 libstdc++6 libssl3 libsofthsm2"

# TPM tests that use swtpm (the others use the in-process simulator, which
# needs cgo and OpenSSL for the target: not the production path).
TPM_TESTS='^(TestConformanceSwtpm|TestSwtpmTCPAlgorithms|TestSwtpmRestart|TestLockoutNoDA|TestStartup|TestURIChecks|TestTPM2ToolsReadPublic|TestOpenErrors)$'

step() { printf '\n== test-arm: %s\n' "$*"; }
fail() { printf 'test-arm: FAIL: %s\n' "$*" >&2; exit 1; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local t=$1 what=$2
	shift 2
	for _ in $(seq $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "timed out after ${t} s waiting for $what"
}

for tool in qemu-arm qemu-aarch64 swtpm softhsm2-util openssl dpkg-deb apt-get; do
	command -v "$tool" >/dev/null || fail "$tool not found (run make deps)"
done
[ -d /dev/shm ] && [ -w /dev/shm ] || fail "/dev/shm is not a writable tmpfs: the armhf SoftHSM tests need one (see the comment at the top)"

# sysroot DEBARCH: unpack Debian's DEBARCH runtime into $BIN/arm-sysroot/DEBARCH.
sysroot() {
	local arch=$1 dir="$BIN/arm-sysroot/$1" stamp pkgs p
	stamp="$dir/.packages"
	pkgs=$(for p in $SYSROOT_PACKAGES; do printf '%s:%s ' "$p" "$arch"; done)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkgs" ]; then
		return
	fi
	if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
		echo "adding Debian architecture $arch (dpkg --add-architecture) for apt-get download"
		$SUDO dpkg --add-architecture "$arch"
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	fi
	rm -rf "$dir" "$BIN/arm-sysroot/debs-$arch"
	mkdir -p "$dir" "$BIN/arm-sysroot/debs-$arch"
	# apt-get download writes into the current directory as the _apt user
	# when it can; as root into a directory _apt cannot write it warns and
	# downloads as root, which is what we want here.
	local sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	# shellcheck disable=SC2086
	if ! (cd "$BIN/arm-sysroot/debs-$arch" && apt-get -q "${sandbox[@]}" download $pkgs >/dev/null); then
		echo "apt-get download failed; updating the package lists and retrying"
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		# shellcheck disable=SC2086
		(cd "$BIN/arm-sysroot/debs-$arch" && apt-get -q "${sandbox[@]}" download $pkgs >/dev/null)
	fi
	for p in "$BIN/arm-sysroot/debs-$arch"/*.deb; do
		dpkg-deb -x "$p" "$dir"
		echo "  $(basename "$p")"
	done
	[ -e "$dir/usr/lib/softhsm/libsofthsm2.so" ] || fail "$dir/usr/lib/softhsm/libsofthsm2.so missing after unpacking libsofthsm2:$arch"
	echo "$pkgs" >"$stamp"
}

# run_arch GOARCH DEBARCH QEMU CC [GOARM]
run_arch() {
	local goarch=$1 debarch=$2 qemu=$3 cc=$4 goarm=${5:-}
	local out="$BIN/linux-$goarch" sr="$BIN/arm-sysroot/$debarch" tmp
	local env=(GOOS=linux GOARCH="$goarch" GOARM="$goarm")
	[ -x "$out/thingd" ] || fail "$out/thingd missing (run make cross)"

	step "linux/$goarch: sysroot $sr (Debian $debarch: $SYSROOT_PACKAGES)"
	sysroot "$debarch"
	local emu=("$qemu" -L "$sr")

	step "linux/$goarch: thingd version, thingsim"
	local v
	v=$("${emu[@]}" "$out/thingd" version)
	echo "$v"
	[[ $v == *"thingd $VERSION "* && $v == *"linux/$goarch"* ]] || fail "thingd version printed \"$v\", want \"thingd $VERSION ... linux/$goarch ...\""
	"$qemu" "$out/thingsim" help >/dev/null 2>&1 || fail "thingsim help failed under $qemu"
	echo "thingsim: starts (help)"

	tmp=$(mktemp -d /dev/shm/thingd-test-arm.XXXXXX)
	TMPS+=("$tmp")

	step "linux/$goarch: thingd key generate/info/csr, file: key"
	"${emu[@]}" "$out/thingd" key generate --key "file:$tmp/key.pem" 2>/dev/null | sed 's/^/  /'
	local info want got
	info=$("${emu[@]}" "$out/thingd" key info --json --key "file:$tmp/key.pem" 2>/dev/null)
	got=$(sed -n 's/.*"publicKeySha256": *"\([0-9a-f]*\)".*/\1/p' <<<"$info")
	want=$(openssl pkey -in "$tmp/key.pem" -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ -n "$got" ] && [ "$got" = "$want" ] || fail "key info public key sha256 $got, host openssl says $want"
	"${emu[@]}" "$out/thingd" key csr --key "file:$tmp/key.pem" --thing gw-arm 2>/dev/null >"$tmp/file.csr"
	openssl req -in "$tmp/file.csr" -noout -verify -subject 2>&1 | sed 's/^/  host openssl: /'
	openssl req -in "$tmp/file.csr" -noout -verify >/dev/null 2>&1 || fail "host openssl rejects the CSR"

	step "linux/$goarch: thingd key generate/info/csr, SoftHSM ($debarch libsofthsm2)"
	mkdir -p "$tmp/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$tmp" >"$tmp/softhsm2.conf"
	printf '1234' >"$tmp/pin"
	chmod 600 "$tmp/pin"
	SOFTHSM2_CONF="$tmp/softhsm2.conf" softhsm2-util --init-token --free --label thingd --so-pin 5678 --pin 1234 >/dev/null
	local uri="pkcs11:token=thingd;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$tmp/pin"
	SOFTHSM2_CONF="$tmp/softhsm2.conf" "${emu[@]}" "$out/thingd" key generate --key "$uri" --algorithm ecdsa-p256 | sed 's/^/  /'
	info=$(SOFTHSM2_CONF="$tmp/softhsm2.conf" "${emu[@]}" "$out/thingd" key info --json --key "$uri")
	grep -q '"nonExtractable": true' <<<"$info" || fail "SoftHSM key is not reported non-extractable: $info"
	SOFTHSM2_CONF="$tmp/softhsm2.conf" "${emu[@]}" "$out/thingd" key csr --key "$uri" --thing gw-arm >"$tmp/p11.csr"
	openssl req -in "$tmp/p11.csr" -noout -verify >/dev/null 2>&1 || fail "host openssl rejects the CSR signed by SoftHSM under $qemu"
	echo "  CSR signed inside the $debarch SoftHSM verifies with the host's openssl"

	step "linux/$goarch: keystore/tpmstore swtpm tests (CGO_ENABLED=0, swtpm on the host)"
	env "${env[@]}" CGO_ENABLED=0 "$GO" test -c -o "$out/tpmstore.test" ./keystore/tpmstore
	run_tests "$goarch" tpmstore "$TMPDIR_DEFAULT" "$qemu" "$out/tpmstore.test" -test.run "$TPM_TESTS"

	step "linux/$goarch: keystore/p11store tests, all of them ($debarch libsofthsm2, CC=$cc)"
	env "${env[@]}" CGO_ENABLED=1 CC="$cc" "$GO" test -c -o "$out/p11store.test" ./keystore/p11store
	local tdir="$TMPDIR_DEFAULT"
	[ "$goarch" = arm ] && tdir="$tmp" # tmpfs: see the comment at the top
	run_tests "$goarch" p11store "$tdir" "$qemu" -L "$sr" "$out/p11store.test"

	step "linux/$goarch: end to end: ARM thingsim and ARM thingd, the SoftHSM key above, mutual TLS, a rotation job"
	local sim="$tmp/sim" slog="$LOG/e2e-thingsim-$goarch.log" dlog="$LOG/e2e-thingd-$goarch.log" mqtt simpid dpid st start
	start=$(date +%s)
	export SOFTHSM2_CONF="$tmp/softhsm2.conf"
	"$qemu" "$out/thingsim" serve --dir "$sim" --mqtt 127.0.0.1:0 --api 127.0.0.1:0 2>"$slog" &
	simpid=$!
	PIDS+=("$simpid")
	wait_for 60 "thingsim to listen" test -s "$sim/api.json"
	mqtt=$(sed -n 's/.*"mqttAddress": *"\([^"]*\)".*/\1/p' "$sim/api.json")
	"$qemu" "$out/thingsim" thing create gw-arm --dir "$sim" >/dev/null
	"$qemu" "$out/thingsim" cert create --thing gw-arm --csr "$tmp/p11.csr" --days 30 --dir "$sim" >"$tmp/gw-arm.pem"
	cat >"$tmp/thingd.toml" <<-TOML
		thing_name = "gw-arm"
		endpoint = "localhost:${mqtt##*:}"
		server_ca = "$sim/ca.pem"
		state_dir = "$tmp/state"
		key = "$uri"
		certificate = "$tmp/gw-arm.pem"
	TOML
	"${emu[@]}" "$out/thingd" run --config "$tmp/thingd.toml" 2>"$dlog" &
	dpid=$!
	PIDS+=("$dpid")
	wait_for 60 "thingd to connect to thingsim (log: $dlog)" grep -q 'msg="mqtt connected"' "$dlog"
	st=$("${emu[@]}" "$out/thingd" status --config "$tmp/thingd.toml")
	grep -q '^connection: *connected' <<<"$st" || fail "thingd status after connecting: $st"
	grep -E '^(thing|key store|connection):' <<<"$st" | sed 's/^/  status: /'
	echo '{"operation": "rotate-certificate", "keyAlgorithm": "ECDSA_P256"}' >"$tmp/rotate.json"
	"$qemu" "$out/thingsim" job create --thing gw-arm --document "$tmp/rotate.json" --job-id rotate-arm --dir "$sim" >/dev/null
	wait_for 120 "the rotation job to succeed (logs: $dlog, $slog)" \
		sh -c "'$qemu' '$out/thingsim' job describe rotate-arm --thing gw-arm --dir '$sim' | grep -q SUCCEEDED"
	wait_for 30 "thingd to delete the old key" grep -q 'old key deleted' "$dlog"
	grep -E 'msg="(mqtt connected|rotation committed|rotation cleaned up: old key deleted)"' "$dlog" |
		sed -E 's/^time=[^ ]+ level=[A-Z]+ /  thingd: /; s/ (endpoint|new_certificate_id|old_certificate_id|old_key|component)=("[^"]*"|[^ ]+)//g'
	kill -TERM "$dpid"
	wait "$dpid" || fail "thingd exited with $? after SIGTERM (log: $dlog)"
	kill -TERM "$simpid"
	wait "$simpid" || true
	unset SOFTHSM2_CONF
	echo "  end to end passed in $(($(date +%s) - start)) s (logs: $dlog, $slog)"
}

# run_tests GOARCH PKG TMPDIR QEMU-ARGS... TESTBINARY [TEST-ARGS...]
# Runs a test binary under qemu in its package directory, keeps the -test.v
# log in $LOG and prints the top-level results.
run_tests() {
	local goarch=$1 pkg=$2 tdir=$3
	shift 3
	local log="$LOG/$pkg-$goarch.log" start rc=0
	start=$(date +%s)
	(cd "keystore/$pkg" && TMPDIR="$tdir" "$@" -test.v -test.count=1 -test.timeout=8m) >"$log" 2>&1 || rc=$?
	grep -E '^(--- (PASS|FAIL|SKIP)|PASS$|FAIL$|panic:)' "$log" | sed 's/^/  /' || true
	local n
	n=$(grep -c -- '--- PASS' "$log" || true)
	echo "  $pkg linux/$goarch: $n tests and subtests passed in $(($(date +%s) - start)) s (log: $log)"
	if [ "$rc" != 0 ] || grep -q -- '--- FAIL' "$log" || ! grep -qx PASS "$log"; then
		tail -50 "$log" >&2
		fail "$pkg tests under qemu for linux/$goarch"
	fi
	if grep -q -- '--- SKIP' "$log"; then
		grep -B1 -A2 -- '--- SKIP' "$log" >&2
		fail "$pkg tests under qemu for linux/$goarch skipped some tests (nothing here may skip)"
	fi
}

TMPDIR_DEFAULT=${TMPDIR:-/tmp}
TMPS=() PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "${TMPS[@]}"
}
trap cleanup EXIT
start=$(date +%s)
run_arch arm64 arm64 qemu-aarch64 aarch64-linux-gnu-gcc
run_arch arm armhf qemu-arm arm-linux-gnueabihf-gcc 7
printf '\n== test-arm: all ARM checks passed in %d s\n' "$(($(date +%s) - start))"
