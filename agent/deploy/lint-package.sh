#!/usr/bin/env bash
# Checks of the Debian packages of `make package` (`make lint-package`, part of
# `make test`):
#   1. lintian on each package: no errors (warnings are printed).
#   2. The control data: architecture, Depends/Recommends, the conffile, and the
#      binary's ELF machine for each architecture; thingd does not link nfpm.
#   3. The amd64 package installed with dpkg -i into a throw-away copy of this
#      machine: an overlay of / (changes go to a temporary upper directory) in a
#      private mount namespace, chrooted into, so the real maintainer scripts
#      run (adduser, dpkg-statoverride, deb-systemd-helper) without touching the
#      machine. Checked there: the files are where the unit expects them
#      (ExecStart binary, --config file, User/Group/SupplementaryGroups,
#      ConfigurationDirectory, StateDirectory), thingd runs and prints its
#      version, a reinstall and an upgrade whose config.toml changed keep the
#      admin's edited config, remove keeps the config, purge removes it and
#      keeps /var/lib/thingd. systemd is not running in the chroot, so the
#      scripts skip daemon-reload and start/stop, as they do on any machine
#      without systemd.
# Needs root for the overlay (sudo otherwise).
set -euo pipefail

BIN=${BIN:-bin}
VERSION=${VERSION:?VERSION must be set (make lint-package sets it)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BIN=$(cd "$BIN" && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "lint-package: re-running as root with sudo (the install test mounts an overlay)"
	exec sudo env PATH="$PATH" BIN="$BIN" VERSION="$VERSION" bash "$0"
fi

step() { printf '\n== lint-package: %s\n' "$*"; }
fail() { printf 'lint-package: FAIL: %s\n' "$*" >&2; exit 1; }

declare -A MACHINE=([amd64]="X86-64" [arm64]="AArch64" [armhf]="ARM")
debs=()
for arch in amd64 arm64 armhf; do
	f=$(ls "$BIN"/thingd_*_"$arch".deb 2>/dev/null || true)
	[ "$(wc -w <<<"$f")" = 1 ] || fail "want exactly one $BIN/thingd_*_$arch.deb (run make package), found: ${f:-none}"
	debs+=("$f")
done

step "lintian ${debs[*]##*/}"
# initial-upload-closes-no-bugs: these packages are not uploaded to Debian, so
# there is no ITP bug for the first changelog entry to close.
rc=0
lintian --fail-on error --display-level '>=warning' --suppress-tags initial-upload-closes-no-bugs "${debs[@]}" \
	>"$BIN/lintian.txt" 2>&1 || rc=$?
grep -v '^running with root privileges is not recommended!$' "$BIN/lintian.txt" || true
[ "$rc" = 0 ] || fail "lintian exited with $rc (errors above)"
echo "lintian: no errors, $(grep -c '^W: ' "$BIN/lintian.txt" || true) warnings"

step "control data"
for deb in "${debs[@]}"; do
	arch=$(dpkg-deb -f "$deb" Architecture)
	[[ $deb == *"_$arch.deb" ]] || fail "$deb has Architecture $arch"
	dpkg-deb -f "$deb" Depends | grep -q 'libc6' || fail "$deb does not depend on libc6"
	[ "$(dpkg-deb -f "$deb" Recommends)" = "softhsm2 | tpm2-tools" ] || fail "$deb Recommends: $(dpkg-deb -f "$deb" Recommends)"
	ctl=$(mktemp -d)
	dpkg-deb -e "$deb" "$ctl"
	grep -qx /etc/thingd/config.toml "$ctl/conffiles" || fail "$deb: /etc/thingd/config.toml is not a conffile"
	for s in postinst prerm postrm; do [ -x "$ctl/$s" ] || fail "$deb has no $s"; done
	dpkg-deb -x "$deb" "$ctl/data"
	m=$(od -An -tx1 -j18 -N2 "$ctl/data/usr/bin/thingd" | tr -d ' ')
	rm -rf "$ctl"
	case "$arch:$m" in amd64:3e00 | arm64:b700 | armhf:2800) ;; *) fail "$deb: /usr/bin/thingd has ELF machine 0x$m, not ${MACHINE[$arch]}" ;; esac
	printf '%-48s %-6s Version %s, Depends: %s; /usr/bin/thingd is %s\n' "${deb##*/}" "$arch" \
		"$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Depends)" "${MACHINE[$arch]}"
done

if go list -deps ./agent/cmd/thingd | grep -q goreleaser/nfpm; then
	fail "thingd links nfpm (go list -deps ./agent/cmd/thingd): the packager must stay in its own main package"
fi
echo "thingd does not link nfpm (go list -deps ./agent/cmd/thingd)"

amd64=${debs[0]}

# A second amd64 package, Debian revision 2, whose config.toml differs, for the
# upgrade-with-a-changed-conffile check.
step "an amd64 package with a changed config.toml (Debian revision 2) for the upgrade check"
work=$(mktemp -d /var/tmp/thingd-lint-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r agent/deploy "$work/deploy"
printf '\n# A line added by a newer package.\n' >>"$work/deploy/config.example.toml"
mkdir -p "$work/next"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	go run ./agent/deploy/package -version "$VERSION" -release 2 -arch amd64 -bin "$BIN" -out "$work/next" -deploy "$work/deploy" >/dev/null
next=$(ls "$work"/next/thingd_*_amd64.deb)
echo "${next##*/}"

step "dpkg -i ${amd64##*/} into an overlay of / (nothing changes on this machine)"
mkdir -p "$work/upper" "$work/wrk" "$work/root"
cp "$amd64" "$work/upper/thingd.deb"
cp "$next" "$work/upper/thingd-next.deb"
cp agent/deploy/thingd.service "$work/thingd.service.src"

# Runs inside the private mount namespace.
inner() {
	set -euo pipefail
	local r=$work/root
	mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/wrk" "$r"
	mount -t proc proc "$r/proc"
	mount --rbind /dev "$r/dev"
	mount -t tmpfs tmpfs "$r/run" # no /run/systemd/system: systemd is not running in here
	mount -t tmpfs tmpfs "$r/tmp"
	inroot() { chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
	ok() { printf '  ok: %s\n' "$*"; }
	die() { printf 'lint-package: FAIL (install test): %s\n' "$*" >&2; exit 1; }

	if inroot getent passwd thingd >/dev/null; then die "user thingd already exists on this machine: the test needs a machine without thingd installed"; fi
	inroot dpkg -i /thingd.deb
	inroot dpkg-query -W -f='${Status} ${Version}\n' thingd

	# The unit's paths and accounts.
	local unit=$r/lib/systemd/system/thingd.service
	cmp -s "$unit" "$work/thingd.service.src" || die "installed unit differs from agent/deploy/thingd.service"
	local exec bin cfg
	exec=$(sed -n 's/^ExecStart=//p' "$unit")
	bin=${exec%% *}
	cfg=$(sed -n 's/.*--config[ =]\([^ ]*\).*/\1/p' <<<"$exec")
	[ -x "$r$bin" ] || die "ExecStart binary $bin is not installed"
	ok "ExecStart=$exec: $bin installed, mode $(inroot stat -c %a "$bin")"
	[ -n "$cfg" ] && [ -f "$r$cfg" ] || die "ExecStart --config '$cfg' is not installed"
	ok "config $cfg installed (a conffile), $(inroot stat -c '%U:%G %a' "$cfg")"
	local v
	v=$(inroot "$bin" version)
	[[ $v == "thingd $VERSION "* ]] || die "$bin version printed '$v'"
	ok "$v"
	local user group sup confdir statedir
	user=$(sed -n 's/^User=//p' "$unit")
	group=$(sed -n 's/^Group=//p' "$unit")
	sup=$(sed -n 's/^SupplementaryGroups=//p' "$unit")
	confdir=$(sed -n 's/^ConfigurationDirectory=//p' "$unit")
	statedir=$(sed -n 's/^StateDirectory=//p' "$unit")
	inroot getent passwd "$user" >/dev/null || die "User=$user does not exist after install"
	local pw
	pw=$(inroot getent passwd "$user")
	[ "$(cut -d: -f6 <<<"$pw")" = "/var/lib/thingd" ] || die "home of $user: $pw"
	[ "$(cut -d: -f3 <<<"$pw")" -lt 1000 ] || die "$user is not a system user: $pw"
	ok "user: $pw"
	inroot getent group "$group" >/dev/null || die "Group=$group does not exist"
	for g in $sup; do
		inroot id -nG "$user" | tr ' ' '\n' | grep -qx "$g" || die "$user is not in SupplementaryGroups group $g ($(inroot id "$user"))"
	done
	ok "$(inroot id "$user")"
	[ "$(inroot stat -c '%U:%G %a' "/etc/$confdir")" = "root:$group 750" ] ||
		die "/etc/$confdir is $(inroot stat -c '%U:%G %a' "/etc/$confdir"), want root:$group 750 (ConfigurationDirectoryMode)"
	ok "ConfigurationDirectory /etc/$confdir: root:$group 750"
	[ "$(inroot stat -c '%U:%G %a' "/var/lib/$statedir")" = "$user:$group 700" ] ||
		die "/var/lib/$statedir is $(inroot stat -c '%U:%G %a' "/var/lib/$statedir"), want $user:$group 700"
	ok "StateDirectory /var/lib/$statedir: $user:$group 700"
	inroot runuser -u "$user" -- test -r "$cfg" || die "$user cannot read $cfg"
	ok "$user can read $cfg"
	[ ! -e "$r/etc/systemd/system/multi-user.target.wants/thingd.service" ] || die "the unit was enabled on install"
	ok "thingd.service installed, not enabled (the admin enables it after editing the config)"

	# The admin's config survives a reinstall and an upgrade whose config changed.
	printf '# edited-by-admin\n' >>"$r$cfg"
	inroot dpkg -i /thingd.deb >/dev/null
	grep -q edited-by-admin "$r$cfg" || die "reinstall replaced the edited $cfg"
	ok "reinstall kept the edited $cfg"
	inroot dpkg -i --force-confdef --force-confold /thingd-next.deb >/dev/null
	grep -q edited-by-admin "$r$cfg" || die "upgrade replaced the edited $cfg"
	[ -f "$r$cfg.dpkg-dist" ] && grep -q 'added by a newer package' "$r$cfg.dpkg-dist" ||
		die "upgrade did not leave the package's new config as $cfg.dpkg-dist"
	ok "upgrade to $(inroot dpkg-query -W -f='${Version}' thingd) kept the edited $cfg (new one in $cfg.dpkg-dist)"
	inroot getent passwd "$user" >/dev/null || die "user lost on upgrade"

	inroot dpkg -r thingd >/dev/null
	[ ! -e "$r$bin" ] || die "$bin still there after dpkg -r"
	[ -f "$r$cfg" ] || die "dpkg -r removed $cfg"
	ok "dpkg -r: $bin gone, $cfg kept"
	inroot dpkg -P thingd >/dev/null
	[ ! -e "$r$cfg" ] || die "dpkg -P left $cfg"
	[ -d "$r/var/lib/$statedir" ] || die "dpkg -P removed /var/lib/$statedir (the device identity is kept on purpose)"
	inroot getent passwd "$user" >/dev/null || die "dpkg -P removed user $user (kept on purpose)"
	ok "dpkg -P: $cfg gone; /var/lib/$statedir and user $user kept (documented in postrm)"
}
export -f inner
export work VERSION
unshare --mount --propagation private bash -c inner || fail "install test (above)"
printf '\n== lint-package: all package checks passed\n'
