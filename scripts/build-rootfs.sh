#!/usr/bin/env bash
# Builds the root filesystems of the local base-image stand-ins from Debian
# packages, as DESIGN.md describes. layerbench runs this script (it is embedded
# in the binary) only when an image is missing and --pull was not given.
#
#   build-rootfs.sh WORKDIR MIRROR KIND
#
# KIND is `runtime` (debian:bookworm-slim stand-in: a minbase bookworm root) or
# `golang` (golang:1.23 stand-in: the same root plus golang-1.23-go from
# bookworm-backports, gcc, libc6-dev and ca-certificates).
# Writes WORKDIR/KIND.tar and WORKDIR/KIND.packages (one `name=version` a line).
set -euo pipefail

workdir=$1
mirror=$2
kind=$3

die() { echo "build-rootfs: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed: run 'apt-get install -y debootstrap'"
command -v tar >/dev/null || die "tar is not installed"

mkdir -p "$workdir"
base="$workdir/minbase"

# The minbase root is shared by both kinds; it is reused when complete.
if [ ! -f "$base/.layerbench-complete" ]; then
    rm -rf "$base" "$base.partial"
    echo "build-rootfs: debootstrap --variant=minbase bookworm from $mirror (about 40 s)" >&2
    debootstrap --variant=minbase bookworm "$base.partial" "$mirror" >"$workdir/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $workdir/debootstrap.log"
    rm -rf "$base.partial/var/cache/apt/archives/"*.deb "$base.partial/var/lib/apt/lists/"*
    touch "$base.partial/.layerbench-complete"
    mv "$base.partial" "$base"
fi

root="$workdir/$kind.root"
rm -rf "$root"
cp -a "$base" "$root"
rm -f "$root/.layerbench-complete"

case "$kind" in
runtime)
    packages="base-files libc6 tzdata"
    ;;
golang)
    packages="golang-1.23-go gcc libc6-dev ca-certificates"
    echo "deb $mirror bookworm-backports main" >"$root/etc/apt/sources.list.d/backports.list"
    echo "build-rootfs: apt-get install $packages in the chroot (about 30 s)" >&2
    {
        chroot "$root" apt-get update -q \
        && chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends -t bookworm-backports $packages
    } >"$workdir/golang-apt.log" 2>&1 || die "apt-get in the golang chroot failed; see $workdir/golang-apt.log"
    mkdir -p "$root/go/bin" "$root/go/src"
    chmod 1777 "$root/go"
    ;;
*)
    die "unknown kind '$kind' (expected runtime or golang)"
    ;;
esac

# Record what the stand-in is made of before the package database is trimmed.
chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' $packages >"$workdir/$kind.packages.partial" 2>/dev/null \
    || die "dpkg-query in the $kind chroot failed"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/tmp/"*

tar --numeric-owner --xattrs -C "$root" \
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
    -cf "$workdir/$kind.tar.partial" . || die "tar of the $kind root failed"
mv "$workdir/$kind.tar.partial" "$workdir/$kind.tar"
mv "$workdir/$kind.packages.partial" "$workdir/$kind.packages"
rm -rf "$root"
echo "build-rootfs: wrote $workdir/$kind.tar" >&2
