#!/bin/sh
# Fetches a nats-server with the fix for the clustered expected-sequence race (nats-server #4320,
# fixed in 2.9.21 / 2.10): Debian trixie's .deb, downloaded with a temporary sources list (the
# host's apt setup is not changed) and unpacked with dpkg -x into DEST. Bookworm's 2.9.10 stays
# the single-node default; the cluster tests and multi-instance collectors use this one.
# Usage: scripts/fetch-nats-server.sh DEST VERSION
set -eu
dest=$(realpath -m "$1")
version=$2
[ -x "$dest/usr/sbin/nats-server" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
chmod 755 "$work"; chown -R _apt "$work/lists" "$work/archives" 2>/dev/null || true
printf 'deb http://deb.debian.org/debian trixie main\n' > "$work/sources.list"
opts="-o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$work/lists -o Dir::Cache::Archives=$work/archives -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1"
# shellcheck disable=SC2086
apt-get $opts update -qq
cd "$work/archives"
# shellcheck disable=SC2086
apt-get $opts download -qq "nats-server=$version"
mkdir -p "$dest"
dpkg -x "$work"/archives/nats-server_*.deb "$dest"
"$dest/usr/sbin/nats-server" --version
