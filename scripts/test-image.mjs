#!/usr/bin/env node
// make image-test: the OCI image (make image) loaded into podman and run the way the DaemonSet
// runs it — the agent image, privileged, with the host's PID and network namespaces and a bpffs
// (here one of its own, not the host's) — against a real nats-server and a real workload: its
// events reach the stream, /healthz and /readyz answer on the host network, SIGTERM stops it
// cleanly. Removes its container, its image and its mounts afterwards.
//   node scripts/test-image.mjs packages/tcpdwell_VERSION.oci.tar localhost/tcpdwell:VERSION
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkRun, natsWithStream, report, sh, waitForLine, workload } from './package-checks.mjs';

const archive = resolve(process.argv[2] ?? '');
const name = process.argv[3] ?? '';
if (!existsSync(archive) || !name) {
  console.error('usage: node scripts/test-image.mjs IMAGE.oci.tar NAME:TAG (make image-test builds it first)');
  process.exit(2);
}
for (const tool of ['podman', 'runc']) {
  if (spawnSync(tool, ['--version']).error) {
    console.error(`image-test: ${tool} is missing: apt-get install podman runc`);
    process.exit(1);
  }
}
const r = report('image-test');
const work = mkdtempSync('/var/tmp/tcpdwell-imagetest-');
const bpffs = join(work, 'bpf');
const container = `tcpdwell-imagetest-${process.pid}`;
const netns = `tcpdwell-imagetest-${process.pid}`;
const PORT = 8952;
const podman = (...args) => sh('podman', args);
// This VM, measured: Debian 12's crun refuses a hybrid cgroup host whose v2 hierarchy has a
// controller ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"; here
// hugetlb sits on /sys/fs/cgroup/unified), so runc runs the container; and the VM's bounding set
// lacks CAP_SYS_RESOURCE, so podman's default RLIMIT_NOFILE (1048576) cannot be set: the limits
// given are the VM's own hard limit for files and 32768 processes (the most runc could set here).
const hybrid = (() => {
  try {
    return readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== '';
  } catch {
    return false;
  }
})();
const nofile = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1048576);
const hostQuirks = [...(hybrid ? ['--runtime', 'runc'] : []), '--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', 'nproc=32768:32768'];
let nats = null;
let loaded = false;
const cleanup = async () => {
  spawnSync('podman', ['rm', '--force', '--ignore', container]);
  if (loaded) spawnSync('podman', ['rmi', '--force', name]);
  spawnSync('umount', [bpffs]);
  spawnSync('ip', ['netns', 'del', netns]);
  await nats?.stop();
  rmSync(work, { recursive: true, force: true });
};

try {
  r.step(`podman load -i ${archive}`);
  const out = podman('load', '--input', archive);
  loaded = true;
  r.check(/Loaded image(?:\(s\))?: *(\S+)/.exec(out)?.[1] === name, `podman loaded it as ${name} (${out.trim()})`);
  const cfg = JSON.parse(podman('image', 'inspect', name))[0];
  r.check(JSON.stringify(cfg.Config.Entrypoint) === '["/opt/tcpdwell/bin/tcpdwell"]', `entrypoint ${JSON.stringify(cfg.Config.Entrypoint)}`);
  r.check('19464/tcp' in (cfg.Config.ExposedPorts ?? {}), 'exposes 19464/tcp (metrics, /healthz, /readyz)');
  r.check(cfg.Labels?.['org.opencontainers.image.version'] !== undefined, `version label ${cfg.Labels?.['org.opencontainers.image.version']}`);
  r.check(/^tcpdwell \S+ \(Node\.js 24\./.test(podman('run', '--rm', ...hostQuirks, name, '--version').trim()), 'tcpdwell --version in the image runs on Node 24');
  console.log(`  image size: ${(cfg.Size / 1e6).toFixed(0)} MB`);

  r.step('podman run: privileged, host PID and network, a bpffs');
  nats = await natsWithStream(join(work, 'nats'));
  mkdirSync(bpffs);
  sh('mount', ['-t', 'bpf', 'bpf', bpffs]); // a bpffs instance of its own: the host's pins are not touched
  const metricsPort = 20000 + (process.pid % 9000) + 1;
  const args = ['run', '--nats', nats.url, '--host', 'imagetest', '--spool-dir=/var/lib/tcpdwell/spool', '--pin-dir=/sys/fs/bpf/tcpdwell', `--metrics-listen=127.0.0.1:${metricsPort}`, '--status-interval=1'];
  const run = spawn('podman', ['run', '--name', container, ...hostQuirks, '--privileged', '--pid=host', '--network=host', '--volume', `${bpffs}:/sys/fs/bpf`, name, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  run.stderr.on('data', (d) => (log += d));
  r.check(await waitForLine(() => log, 'publishing to tcpdwell.v1.imagetest.', run, 60_000), `the agent started in the container and publishes${run.exitCode !== null ? ` (exited ${run.exitCode}: ${log.slice(-800)})` : ''}`);
  workload(netns, PORT);
  await checkRun(r, {
    nats,
    port: PORT,
    metricsPort,
    log: () => log,
    stop: async () => {
      spawnSync('podman', ['stop', '--time', '20', container]); // SIGTERM (the image's stop signal), then a grace period
      await new Promise((res) => (run.exitCode === null ? run.on('close', res) : res()));
      return Number(podman('inspect', '--format', '{{.State.ExitCode}}', container).trim());
    },
  });
} catch (err) {
  r.failures++;
  console.error(`image-test: ${err.message}${err.stderr ? `\n${err.stderr}` : ''}`);
} finally {
  await cleanup();
  const images = spawnSync('podman', ['images', '--quiet', '--filter', 'label=org.opencontainers.image.title=tcpdwell'], { encoding: 'utf8' }).stdout.trim();
  r.check(images === '', 'no tcpdwell image is left in podman');
}
r.step(r.failures ? `${r.failures} checks failed` : 'all checks passed');
process.exit(r.failures ? 1 : 0);
