#!/usr/bin/env bash
# Builds the root filesystems of the local base-image stand-ins from Debian
# packages, as DESIGN.md describes. layerbench runs this script (it is embedded
# in the binary) only when an image is missing and --pull was not given.
#
#   build-rootfs.sh WORKDIR MIRROR KIND
#
# KIND is one of
# - `runtime`: the debian:bookworm-slim stand-in, a minbase bookworm root;
# - `golang-1.N`: the golang:1.N stand-in, laid out as the official
#   golang:1.N-bookworm image: the packages of buildpack-deps:bookworm-curl and
#   bookworm-scm and of golang's own Dockerfile, Debian's golang-1.N-go (from
#   bookworm-backports unless bookworm has it) linked as /usr/local/go, and /go;
# - `distroless-static`, `distroless-base`: the gcr.io/distroless stand-ins,
#   assembled from unpacked .deb files (no shell, no package manager): base-files,
#   netbase, tzdata, media-types, the CA bundle, /etc/passwd with root, nobody
#   and nonroot (65532); `base` adds glibc, libssl3 and openssl.
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

# The package lists of the official images' Dockerfiles (buildpack-deps:bookworm-curl, bookworm-scm, golang).
curl_packages="ca-certificates curl gnupg netbase sq wget"
scm_packages="git mercurial openssh-client subversion procps"
cgo_packages="g++ gcc libc6-dev make pkg-config"

in_root() {
    local log=$1
    shift
    chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@" >>"$workdir/$log" 2>&1 \
        || die "\`$*\` in the $kind chroot failed; see $workdir/$log"
}

case "$kind" in
runtime)
    packages="base-files libc6 tzdata"
    chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' $packages >"$workdir/$kind.packages.partial" 2>/dev/null \
        || die "dpkg-query in the $kind chroot failed"
    ;;
golang-1.*)
    go="${kind#golang-}"
    : >"$workdir/$kind-apt.log"
    echo "deb $mirror bookworm-backports main" >"$root/etc/apt/sources.list.d/backports.list"
    echo "build-rootfs: apt-get install golang-$go-go and the official image's packages in the chroot (about 90 s)" >&2
    in_root "$kind-apt.log" apt-get update -q
    in_root "$kind-apt.log" apt-get install -y -q --no-install-recommends $curl_packages $scm_packages $cgo_packages
    # bookworm ships one Go; backports the newer ones.
    in_root "$kind-apt.log" sh -c "apt-get install -y -q --no-install-recommends golang-$go-go \
        || apt-get install -y -q --no-install-recommends -t bookworm-backports golang-$go-go"
    [ -x "$root/usr/lib/go-$go/bin/go" ] || die "golang-$go-go left no /usr/lib/go-$go/bin/go"
    ln -s "/usr/lib/go-$go" "$root/usr/local/go"
    mkdir -p "$root/go/bin" "$root/go/src"
    chmod -R 1777 "$root/go"
    packages="golang-$go-go $curl_packages $scm_packages $cgo_packages"
    chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' $packages >"$workdir/$kind.packages.partial" 2>/dev/null \
        || die "dpkg-query in the $kind chroot failed"
    ;;
distroless-static|distroless-base)
    packages="base-files netbase tzdata media-types"
    [ "$kind" = distroless-base ] && packages="$packages libc6 libssl3 openssl"
    : >"$workdir/$kind-apt.log"
    echo "build-rootfs: unpacking $packages and the CA bundle into an empty root (about 20 s)" >&2
    in_root "$kind-apt.log" apt-get update -q
    # The CA bundle is generated when ca-certificates is configured: install it here, copy the bundle.
    in_root "$kind-apt.log" apt-get install -y -q --no-install-recommends ca-certificates
    mkdir -p "$root/tmp/debs" "$root/tmp/out"
    in_root "$kind-apt.log" sh -c "cd /tmp/debs && apt-get download $packages"
    in_root "$kind-apt.log" sh -c 'for d in /tmp/debs/*.deb; do dpkg-deb -x "$d" /tmp/out; done'
    chroot "$root" sh -c 'for d in /tmp/debs/*.deb; do dpkg-deb -f "$d" Package Version | paste -sd= | sed "s/^Package: //; s/=Version: /=/"; done' \
        >"$workdir/$kind.packages.partial" || die "reading the unpacked packages' names failed"
    out="$root/tmp/out"
    mkdir -p "$out/etc/ssl/certs" "$out/home/nonroot" "$out/root" "$out/tmp"
    cp "$root/etc/ssl/certs/ca-certificates.crt" "$out/etc/ssl/certs/ca-certificates.crt"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$out/etc/group"
    chown 65532:65532 "$out/home/nonroot"
    chmod 700 "$out/home/nonroot" "$out/root"
    chmod 1777 "$out/tmp"
    # What the image must hold, checked here: it has no shell to check it with later.
    grep -q '^nonroot:x:65532:65532:' "$out/etc/passwd" || die "no nonroot user in the $kind root"
    [ -s "$out/etc/ssl/certs/ca-certificates.crt" ] || die "no CA bundle in the $kind root"
    [ -f "$out/usr/share/zoneinfo/Etc/UTC" ] || die "no tzdata in the $kind root"
    if [ "$kind" = distroless-base ]; then
        [ -f "$out/lib/x86_64-linux-gnu/libc.so.6" ] || die "no glibc in the $kind root"
    fi
    mv "$out" "$workdir/$kind.out"
    rm -rf "$root"
    root="$workdir/$kind.out"
    ;;
*)
    die "unknown kind '$kind' (expected runtime, golang-1.N, distroless-static or distroless-base)"
    ;;
esac

rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/tmp/"*

tar --numeric-owner --xattrs -C "$root" \
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
    -cf "$workdir/$kind.tar.partial" . || die "tar of the $kind root failed"
mv "$workdir/$kind.tar.partial" "$workdir/$kind.tar"
mv "$workdir/$kind.packages.partial" "$workdir/$kind.packages"
rm -rf "$root"
echo "build-rootfs: wrote $workdir/$kind.tar" >&2
