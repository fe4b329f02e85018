#!/usr/bin/env bash
# Makes the root filesystem an engine of another Docker release runs from: a minbase Debian RELEASE with its
# docker.io, docker-cli and docker-buildx (and their containerd and runc). layerbench runs this script (it is embedded
# in the binary) once per release, from `layerbench engine start --release RELEASE`; the root is then reused.
#
#   build-engine-root.sh RELEASE DEST MIRROR
#
# Writes DEST (made in DEST.partial, renamed when whole) and DEST/.layerbench-packages (one `name=version` a line).
set -euo pipefail

release=$1
dest=$2
mirror=$3

die() { echo "build-engine-root: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed: run 'apt-get install -y debootstrap'"
[ -e "/usr/share/debootstrap/scripts/$release" ] || die "this debootstrap does not know the release '$release' (see /usr/share/debootstrap/scripts)"

partial="$dest.partial"
log="$dest.log"
# An interrupted earlier attempt may have left debootstrap's /proc or /sys mounted inside it.
if [ -d "$partial" ]; then
    umount -R "$partial/proc" "$partial/sys" "$partial/dev" 2>/dev/null || true
    rm -rf --one-file-system "$partial" || die "cannot remove $partial (something is still mounted under it?)"
fi
mkdir -p "$(dirname "$dest")"
echo "build-engine-root: debootstrap --variant=minbase $release from $mirror (about a minute; log $log)" >&2
debootstrap --variant=minbase "$release" "$partial" "$mirror" >"$log" 2>&1 \
    || die "debootstrap of $release failed; see $log"

# Installing must not start anything: no service of the root runs outside layerbench's own dockerd.
printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
chmod 755 "$partial/usr/sbin/policy-rc.d"
packages="docker.io docker-cli docker-buildx"
echo "build-engine-root: apt-get install $packages in the $release root (about 30 s)" >&2
{
    chroot "$partial" apt-get update -q \
    && chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages
} >>"$log" 2>&1 || die "apt-get install $packages in the $release root failed; see $log"

chroot "$partial" dpkg-query -W -f='${Package}=${Version}\n' $packages containerd runc >"$partial/.layerbench-packages" \
    || die "dpkg-query in the $release root failed"
rm -rf "$partial/var/cache/apt/archives/"*.deb "$partial/var/lib/apt/lists/"*
rm -rf "$dest"
mv "$partial" "$dest"
echo "build-engine-root: wrote $dest" >&2
