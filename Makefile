# tcpdwell — the front door: make, make test, make run, make bench, make clean.
# V=1 shows full commands.

.DELETE_ON_ERROR:
.DEFAULT_GOAL := all

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)"
endif

OUTPUT     := bpf/.output
BPF_OBJ    := $(OUTPUT)/tcpdwell.bpf.o
VMLINUX_H  := $(OUTPUT)/vmlinux.h
ADDON      := bpf-ts-loader/build/Release/bpf_ts_loader.node
TS_STAMP   := dist/.stamp
ARCH       := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
CLANG      ?= clang
BPFTOOL    ?= $(firstword $(wildcard /usr/sbin/bpftool /usr/bin/bpftool) bpftool)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror -I$(OUTPUT) -Ibpf

# ---- runtime: Node 24 LTS -------------------------------------------------------------
# tcpdwell runs on Node >= 22 (24 LTS is the target). When the node on PATH is older (Debian 12
# ships 18; this machine has 20), `make deps` installs the npm registry's `node` package (24)
# into .node/ and every recipe below runs with it first on PATH: npm, node-gyp, tsc, vitest, the
# benches. bin/tcpdwell picks a node in the same order: $$TCPDWELL_NODE (exported below, so the
# tests' children run on the same node as vitest), the node on PATH if new enough, then .node/.
NODE_MAJOR := 24
NODE_MIN   := 22
LOCAL_NODE := $(CURDIR)/.node/node_modules/node/bin/node
PATH_NODE  := $(shell v=$$(node --version 2>/dev/null); m=$${v#v}; m=$${m%%.*}; \
                [ -n "$$m" ] && [ "$$m" -ge $(NODE_MIN) ] && command -v node)
NODE       := $(or $(TCPDWELL_NODE),$(PATH_NODE),$(LOCAL_NODE))
export TCPDWELL_NODE := $(NODE)
export PATH := $(patsubst %/,%,$(dir $(NODE))):$(PATH)
# node-gyp needs the headers of the node it builds for, and must not fetch them (the network is
# closed): the registry's package carries them beside its binary, a system node under its prefix.
node_headers = $(shell p=$$(dirname $$(dirname $(NODE))); for d in $$p $$p/node_modules/node-linux-*; do \
                 [ -f $$d/include/node/node_api.h ] && { echo $$d; break; }; done)

# What a fresh Debian machine lacks. Checked by `make deps`, which `make run` and `make test` call.
# nginx-light, redis-server, memcached: the real servers the owner tests run (test/kernel/servers.test.ts); Debian's
# policy-rc.d (made for the install when missing) keeps their services from starting.
DEB_PKGS   := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev iproute2 nats-server pkg-config nftables tmux python3-yaml systemd openssl prometheus clickhouse-server clickhouse-client nginx-light redis-server redis-tools memcached
DEB_CHECK  := clang llvm-strip bpftool ip nats-server pkg-config nft tmux systemd-analyze openssl promtool prometheus clickhouse-server clickhouse-client nginx redis-server redis-benchmark memcached
# A nats-server with the fix for the clustered expected-sequence race (#4320) for the cluster
# tests (bookworm's 2.9.10 has it): Debian trixie's, unpacked under .cache/ (scripts/fetch-nats-server.sh).
NATS_CLUSTER_VERSION := 2.10.27
NATS_CLUSTER_BIN     := .cache/nats-server-$(NATS_CLUSTER_VERSION)/usr/sbin/nats-server
TS_SRC     := $(shell find src -name '*.ts' -not -path 'src/publish/pb/*' 2>/dev/null) tsconfig.json
PROTO      := proto/tcpdwell/v1/tcpdwell.proto
PB_JS      := src/publish/pb/tcpdwell.js
PB_DTS     := src/publish/pb/tcpdwell.d.ts

.PHONY: all deps print-node typecheck test test-unit run bench bench-storm bench-fleet soak clean abi check-abi deb deb-test image image-test

all: $(BPF_OBJ) $(ADDON) $(TS_STAMP)

# ---- set-up ----------------------------------------------------------------------------
deps: .deps.stamp $(NODE) node_modules/.package-lock.json $(NATS_CLUSTER_BIN)

$(NATS_CLUSTER_BIN): scripts/fetch-nats-server.sh | .deps.stamp
	$(call msg,FETCH,nats-server $(NATS_CLUSTER_VERSION) (Debian trixie))
	$(Q)scripts/fetch-nats-server.sh .cache/nats-server-$(NATS_CLUSTER_VERSION) '$(NATS_CLUSTER_VERSION)*' >/dev/null
	$(Q)touch $@   # the packaged binary's mtime predates the script: without this, every make re-runs it

# Re-checked when the Makefile changes (a new package in DEB_PKGS reaches existing checkouts too).
.deps.stamp: Makefile
	$(call msg,DEPS,debian packages)
	$(Q)missing=""; for c in $(DEB_CHECK); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing=1; done; \
	[ -f /usr/include/bpf/libbpf.h ] && [ -f /usr/include/gelf.h ] && [ -f /usr/include/zlib.h ] || missing=1; \
	/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing=1; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "tcpdwell: missing Debian packages; run as root or: sudo apt-get install $(DEB_PKGS)" >&2; exit 1; fi; \
	  own_policy=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null; st=$$?; \
	  [ -z "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d; [ $$st = 0 ] || exit $$st; \
	fi
	$(Q)command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then echo "tcpdwell: npm is missing; run as root or: sudo apt-get install npm" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
	$(Q)touch $@

# The node every recipe runs (.ci/run asks which one a fresh clone gets).
print-node:
	@echo $(NODE)

# Only made when neither TCPDWELL_NODE nor the node on PATH will do (see the runtime section).
$(LOCAL_NODE): | .deps.stamp
	$(call msg,NODE,node@$(NODE_MAJOR) into .node/ (the node on PATH is $(shell node --version 2>/dev/null || echo missing)))
	$(Q)mkdir -p .node
	$(Q)npm install --prefix .node --no-save --no-audit --no-fund --loglevel=error node@$(NODE_MAJOR) >/dev/null
	$(Q)"$@" --version | grep -q '^v$(NODE_MAJOR)\.' || { echo "tcpdwell: npm install node@$(NODE_MAJOR) gave $$("$@" --version 2>&1)" >&2; exit 1; }

node_modules/.package-lock.json: package.json package-lock.json bpf-ts-loader/package.json | .deps.stamp $(NODE)
	$(call msg,NPM,install (node $(shell $(NODE) --version 2>/dev/null)))
	$(Q)npm_config_nodedir=$(node_headers) npm ci --no-audit --no-fund --loglevel=error
	$(Q)touch $@

# ---- kernel program --------------------------------------------------------------------
$(VMLINUX_H): | .deps.stamp
	$(call msg,BTF,$@)
	$(Q)mkdir -p $(OUTPUT)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(BPF_OBJ): bpf/tcpdwell.bpf.c bpf/tcpdwell.h $(VMLINUX_H)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c bpf/tcpdwell.bpf.c -o $@

# ---- native addon ----------------------------------------------------------------------
$(ADDON): $(wildcard bpf-ts-loader/src/*.c) bpf-ts-loader/binding.gyp | node_modules/.package-lock.json
	$(call msg,ADDON,$@)
	$(Q)cd bpf-ts-loader && npm_config_nodedir=$(node_headers) npm run --silent install >/dev/null

# ---- protobuf: static code generated from the .proto at build time (never edited) ------
$(PB_JS): $(PROTO) | node_modules/.package-lock.json
	$(call msg,PBJS,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)node_modules/.bin/pbjs -t static-module -w es6 -o $@.tmp $(PROTO) && mv $@.tmp $@

$(PB_DTS): $(PB_JS)
	$(call msg,PBTS,$@)
	$(Q)node_modules/.bin/pbts -o $@.tmp $(PB_JS) && mv $@.tmp $@

# ---- TypeScript ------------------------------------------------------------------------
$(TS_STAMP): $(TS_SRC) $(PB_JS) $(PB_DTS) | node_modules/.package-lock.json
	$(call msg,TSC,dist/)
	$(Q)rm -rf dist && node_modules/.bin/tsc -p tsconfig.json
	$(Q)mkdir -p dist/publish/pb && cp $(PB_JS) dist/publish/pb/
	$(Q)touch $@

# The TypeScript view of bpf/tcpdwell.h, generated from the object's BTF (committed).
abi: $(BPF_OBJ)
	$(call msg,GEN,src/kernel/abi.ts)
	$(Q)node scripts/gen-abi.mjs $(BPF_OBJ) $(VMLINUX_H) > src/kernel/abi.ts.tmp && mv src/kernel/abi.ts.tmp src/kernel/abi.ts

check-abi: $(BPF_OBJ)
	$(Q)node scripts/gen-abi.mjs $(BPF_OBJ) $(VMLINUX_H) | diff -u src/kernel/abi.ts - \
	  || { echo "src/kernel/abi.ts is stale: run 'make abi' and commit it" >&2; exit 1; }

# ---- front door ------------------------------------------------------------------------
# The tests are code too: type-checked with the sources (tsconfig.test.json) and the loader's own.
typecheck: deps all
	$(call msg,TSC,tests (no emit))
	$(Q)node_modules/.bin/tsc -p tsconfig.test.json
	$(Q)node_modules/.bin/tsc -p bpf-ts-loader

test: typecheck
	node_modules/.bin/vitest run $(VITEST_ARGS)

test-unit: typecheck
	node_modules/.bin/vitest run test/unit

# The main job: the agent publishing to a local embedded nats-server (data under var/), with a
# collector beside it storing everything into var/fleet.duckdb (STORE= for none). Watch the data
# flow with `./bin/tcpdwell tail` in another terminal; ask it the morning after with
# `./bin/tcpdwell query --store var/fleet.duckdb --port 443` once it is stopped.
# ARGS="--nats nats://h:4222" for a real one.
STORE ?= var/fleet.duckdb
run: deps all
	./bin/tcpdwell run $(if $(STORE),--store $(STORE)) $(ARGS)

# Churn and tracers side by side, then the decode microbenchmark; results into BENCHMARKS.md.
# Needs root. Quick smoke run: make bench BENCH_REPS=1 BENCH_SECONDS=2 BENCH_LABEL=smoke
# (all knobs: the header of bench/run-bench.mjs).
BENCH_CHURN := bench/.output/churn
BENCH_CC    := $(or $(shell command -v cc 2>/dev/null),$(CLANG))

$(BENCH_CHURN): bench/churn.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(BENCH_CC) -O2 -pthread -Wall -Wextra -o $@ $<

bench: deps all $(BENCH_CHURN)
	node bench/run-bench.mjs

# The storm scenario (issue 13): each run 30 s of calm (1,000 conn/s), then 10 s unpaced, under the
# same tracer; the other knobs of make bench apply (defaults below unless set).
bench-storm: deps all $(BENCH_CHURN)
	BENCH_CALM_SECONDS=$${BENCH_CALM_SECONDS:-30} BENCH_CALM_RATE=$${BENCH_CALM_RATE:-1000} BENCH_SECONDS=$${BENCH_SECONDS:-10} \
	BENCH_LABEL=$${BENCH_LABEL:-storm} BENCH_CONTENDERS=$${BENCH_CONTENDERS:-none,tcpdwell-raw,tcpdwell-run} BENCH_REPS=$${BENCH_REPS:-3} \
	BENCH_PIPELINE=$${BENCH_PIPELINE:-0} BENCH_DECODE=$${BENCH_DECODE:-0} node bench/run-bench.mjs

# Soak (issue 7; not part of make test or CI; needs root): the agent under steady loopback churn
# for SOAK_SECONDS (default 600), its RSS, fds and live table vs ss -tan sampled every 30 s;
# results into BENCHMARKS.md. Knobs: the header of bench/soak.mjs.
soak: deps all $(BENCH_CHURN)
	node bench/soak.mjs

# The central pipeline at fleet scale (issue 16; not part of make test or CI; needs root for the
# capture): collector throughput (1 instance, and 1-3 on a 3-node cluster), store ingest, bytes
# per event, forensic query times, scrape time; results into BENCHMARKS.md. Run it under the heavy
# lock. Quick smoke run: make bench-fleet FLEET_SCALE=0.05 FLEET_REPS=1 FLEET_STORE_EVENTS=200000
# FLEET_LABEL=smoke (all knobs: the header of bench/fleet-bench.mjs).
bench-fleet: deps all $(BENCH_CHURN)
	node bench/fleet-bench.mjs

# ---- packages --------------------------------------------------------------------------
# A Debian package of the built agent with its runtime (scripts/make-deb.sh); dpkg-deb only.
DEB_VERSION := $(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' package.json)
DEB_FILE    := packages/tcpdwell_$(DEB_VERSION)_$(shell dpkg --print-architecture 2>/dev/null).deb
DEB_INPUTS  := scripts/make-deb.sh package.json package-lock.json bin/tcpdwell $(wildcard deploy/*/* docs/*)

deb: $(DEB_FILE)

$(DEB_FILE): $(TS_STAMP) $(BPF_OBJ) $(ADDON) $(DEB_INPUTS) | deps
	$(call msg,DEB,$@)
	$(Q)scripts/make-deb.sh $@ >/dev/null

# The package on a clean Debian 12 (an mmdebstrap root, in a private mount namespace): apt
# installs it, its agent runs from it against a real nats-server and workload, purge removes it
# (not part of make test; needs root and apt's mirror; see the script's header for how long).
deb-test: deb
	$(NODE) scripts/test-deb.mjs $(DEB_FILE)

# An OCI image of the agent from Debian packages only (mmdebstrap + the .deb + umoci; no
# registry): packages/tcpdwell_VERSION.oci.tar, named localhost/tcpdwell:VERSION as the DaemonSet
# references it. `podman load -i` it, or `skopeo copy oci-archive:FILE:localhost/tcpdwell:VERSION docker://REGISTRY/tcpdwell:VERSION`.
IMAGE_NAME := localhost/tcpdwell:$(DEB_VERSION)
IMAGE_FILE := packages/tcpdwell_$(DEB_VERSION).oci.tar

image: $(IMAGE_FILE)

$(IMAGE_FILE): $(DEB_FILE) scripts/make-image.sh
	$(call msg,IMAGE,$@ ($(IMAGE_NAME)))
	$(Q)scripts/make-image.sh $(DEB_FILE) $@ $(IMAGE_NAME) > $@.log 2>&1 || { cat $@.log; rm -f $@.log; exit 1; }
	$(Q)rm -f $@.log

# The image run by podman (privileged, host PID and network, a bpffs of its own) against a real
# nats-server and workload; removes its container and image afterwards. Not part of make test.
image-test: image
	$(NODE) scripts/test-image.mjs $(IMAGE_FILE) $(IMAGE_NAME)

clean:
	rm -rf $(OUTPUT) dist bpf-ts-loader/build .deps.stamp src/publish/pb
	rm -rf bench/.output packages
