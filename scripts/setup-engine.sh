#!/usr/bin/env bash
# Makes sure a Docker engine answers, as layerbench needs (Debian, as root):
# installs Debian's docker.io (and debootstrap, for the base-image stand-ins;
# libxml2-utils, for the xmllint the JUnit schema test runs) when missing,
# starts dockerd in the background when no daemon answers, and waits until it
# does. A no-op when an engine already answers.
set -euo pipefail

say() { echo "setup-engine: $*" >&2; }
die() { say "$*"; exit 1; }

DOCKER=/usr/bin/docker   # Debian's 20.10 client; /usr/local/bin/docker refuses BuildKit here

engine_answers() { [ -x "$DOCKER" ] && timeout 10 "$DOCKER" version >/dev/null 2>&1; }

missing=()
if ! command -v dockerd >/dev/null 2>&1 || [ ! -x "$DOCKER" ]; then missing+=(docker.io); fi
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)   # engines layerbench owns get a bridge of their own
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]} (run as root, or install them yourself)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by hand (this script supports Debian)"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/tmp/layerbench-apt.log 2>&1 || die "apt-get update failed; see /tmp/layerbench-apt.log"
    apt-get install -y -q "${missing[@]}" >>/tmp/layerbench-apt.log 2>&1 \
        || die "apt-get install ${missing[*]} failed; see /tmp/layerbench-apt.log"
fi

if engine_answers; then
    say "a Docker engine answers: $("$DOCKER" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
    exit 0
fi

[ -z "${DOCKER_HOST:-}" ] || die "DOCKER_HOST=$DOCKER_HOST is set but no engine answers there; start it or unset DOCKER_HOST"
[ "$(id -u)" = 0 ] || die "no engine answers and starting dockerd needs root"
log=/var/log/layerbench-dockerd.log
say "starting dockerd in the background (log: $log)"
# dockerd outlives this script: it must not keep the caller's open files (a lock, a pipe a CI job waits on).
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    # 255 is where bash reads this script from.
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done
nohup setsid dockerd >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
    if engine_answers; then
        say "dockerd is up: $("$DOCKER" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
        exit 0
    fi
    sleep 1
done
tail -n 20 "$log" >&2 || true
die "dockerd did not answer within 60 s; see $log"
