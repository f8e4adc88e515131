#!/usr/bin/env bash
# make deb: the built agent as a Debian package, with its runtime (Node 24 from .node/), the
# prebuilt CO-RE object and addon, production node_modules, the systemd units and default
# configs. Installed under /opt/tcpdwell, the same layout as a checkout (bin/tcpdwell finds
# .node/ there), with /usr/bin/tcpdwell linked to it. Built with dpkg-deb only.
#   scripts/make-deb.sh OUT.deb        (the Makefile's `deb` target calls it after `make`)
set -euo pipefail
out=$1
cd "$(dirname "$0")/.."
root=$PWD
version=$(node -p "require('./package.json').version")
arch=$(dpkg --print-architecture)
node_bin=.node/node_modules/node/bin/node
[ -x "$node_bin" ] || { echo "make-deb: $node_bin is missing: the package carries the runtime make deps installs (TCPDWELL_NODE=... make deps does not)" >&2; exit 1; }
"$node_bin" --version | grep -q '^v24\.' || { echo "make-deb: $node_bin is not Node 24" >&2; exit 1; }
for f in dist/main.js bpf/.output/tcpdwell.bpf.o bpf-ts-loader/build/Release/bpf_ts_loader.node; do
	[ -e "$f" ] || { echo "make-deb: $f is missing: run make" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/tcpdwell-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
opt=$stage/opt/tcpdwell
mkdir -p "$opt/bin" "$opt/bpf/.output" "$opt/.node/node_modules/node/bin" "$opt/node_modules"
cp bin/tcpdwell "$opt/bin/"
cp -r dist "$opt/dist"
rm -f "$opt/dist/.stamp"
cp bpf/.output/tcpdwell.bpf.o "$opt/bpf/.output/"
cp "$node_bin" "$opt/$node_bin"
cp package.json package-lock.json README.md "$opt/"

# Production dependencies only, as the lock file pins them; the addon is ours and already built
# (N-API 8), so it is copied in place of npm's link to the source folder, without its sources.
(cd "$opt" && PATH="$root/.node/node_modules/node/bin:$PATH" npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$opt/node_modules/bpf-ts-loader"
mkdir -p "$opt/node_modules/bpf-ts-loader/build/Release"
cp bpf-ts-loader/index.js bpf-ts-loader/index.d.ts bpf-ts-loader/package.json bpf-ts-loader/README.md "$opt/node_modules/bpf-ts-loader/"
cp bpf-ts-loader/build/Release/bpf_ts_loader.node "$opt/node_modules/bpf-ts-loader/build/Release/"
rm -f "$opt/package-lock.json" "$opt/node_modules/.package-lock.json"

mkdir -p "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/tcpdwell" "$stage/usr/share/doc/tcpdwell" "$stage/usr/share/tcpdwell"
ln -s /opt/tcpdwell/bin/tcpdwell "$stage/usr/bin/tcpdwell"
cp deploy/systemd/tcpdwell.service deploy/systemd/tcpdwell-collect.service "$stage/lib/systemd/system/"
install -m 0600 deploy/debian/agent.json "$stage/etc/tcpdwell/agent.json"
install -m 0640 deploy/debian/collect.json "$stage/etc/tcpdwell/collect.json"
cp -r deploy/grafana deploy/prometheus deploy/nats deploy/kubernetes "$stage/usr/share/tcpdwell/"
cp -r docs "$stage/usr/share/doc/tcpdwell/"
cat > "$stage/usr/share/doc/tcpdwell/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tcpdwell
License: MIT
Comment: the bundled Node.js runtime (/opt/tcpdwell/.node) is under the Node.js license (MIT and
 others, https://github.com/nodejs/node/blob/main/LICENSE); the npm packages in
 /opt/tcpdwell/node_modules each carry their own license file.
EOF

mkdir -p "$stage/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
printf '/etc/tcpdwell/agent.json\n/etc/tcpdwell/collect.json\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/control" <<EOF
Package: tcpdwell
Version: $version
Architecture: $arch
Maintainer: tcpdwell maintainers <tcpdwell@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: libc6 (>= 2.34), libstdc++6, libgcc-s1, libbpf1 (>= 1:1.1), libelf1, zlib1g, adduser, init-system-helpers (>= 1.54)
Suggests: nats-server, prometheus
Section: net
Priority: optional
Description: TCP state transitions and exact dwell times, shipped to NATS
 tcpdwell traces every TCP state transition on the host with eBPF (sock:inet_sock_set_state and
 the timewait timers), works out how long each socket sat in each state (TIME_WAIT included),
 who owned it, its container, and why a failed connection failed, and publishes that to NATS
 JetStream for a central collector. The agent (tcpdwell.service) is enabled and started on
 install; configure /etc/tcpdwell/agent.json (NATS servers, credentials). The collector
 (tcpdwell-collect.service) is started only when enabled.
 .
 Bundles its runtime (Node.js 24) and prebuilt kernel program; needs a kernel with BTF.
EOF

mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
