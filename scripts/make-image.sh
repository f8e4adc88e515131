#!/usr/bin/env bash
# make image: an OCI image of the agent built from Debian packages only, with no registry:
# mmdebstrap makes a minbase bookworm root and installs the tcpdwell .deb into it (apt resolves
# the dependencies from the Debian mirror), umoci turns that root into the image's one layer and
# writes its config; the result is an OCI archive that podman load, skopeo or ctr import take.
#   scripts/make-image.sh PACKAGE.deb OUT.oci.tar NAME:TAG
set -euo pipefail
deb=$(readlink -f "$1")
out=$(readlink -f "$(dirname "$2")")/$(basename "$2")
name=$3
tag=${name##*:}
version=$(dpkg-deb --field "$deb" Version)
for tool in mmdebstrap umoci; do
	command -v "$tool" >/dev/null || { echo "make-image: $tool is missing: apt-get install mmdebstrap umoci" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/var/tmp}/tcpdwell-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The root: minbase, without manuals and translations (copyright files stay), the package
# installed as apt would on any Debian 12 host, then apt's lists and cache dropped.
mmdebstrap --quiet --variant=minbase \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--customize-hook="copy-in $deb /tmp" \
	--customize-hook="chroot \"\$1\" apt-get install -y -qq --no-install-recommends /tmp/$(basename "$deb") >/dev/null" \
	--customize-hook='rm -f "$1"/tmp/*.deb' \
	bookworm "$work/rootfs.tar"

umoci init --layout "$work/oci"
umoci new --image "$work/oci:$tag"
umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
tar -C "$work/bundle/rootfs" --numeric-owner -xpf "$work/rootfs.tar"
umoci repack --image "$work/oci:$tag" --history.created_by "mmdebstrap minbase bookworm + tcpdwell_${version}.deb" "$work/bundle"
umoci config --image "$work/oci:$tag" \
	--author "tcpdwell maintainers" \
	--config.entrypoint /opt/tcpdwell/bin/tcpdwell --config.cmd run \
	--config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.workingdir / \
	--config.exposedports 19464/tcp --config.stopsignal SIGTERM \
	--config.label "org.opencontainers.image.title=tcpdwell" \
	--config.label "org.opencontainers.image.version=$version" \
	--config.label "org.opencontainers.image.description=TCP state transitions and exact dwell times, shipped to NATS (the agent: tcpdwell run)" \
	--config.label "org.opencontainers.image.base.name=debian:bookworm (mmdebstrap minbase)" \
	--manifest.annotation "org.opencontainers.image.ref.name=$name"
umoci gc --layout "$work/oci"
# The tag umoci wrote (no / or : allowed) becomes the full name, which podman load and skopeo
# (oci-archive:FILE:NAME) read from index.json; index.json is not content-addressed.
sed -i "s|\"org.opencontainers.image.ref.name\":\"$tag\"|\"org.opencontainers.image.ref.name\":\"$name\"|" "$work/oci/index.json"
grep -q "\"org.opencontainers.image.ref.name\":\"$name\"" "$work/oci/index.json"
mkdir -p "$(dirname "$out")"
tar -C "$work/oci" -cf "$out.tmp" . && mv "$out.tmp" "$out"
echo "$out"
