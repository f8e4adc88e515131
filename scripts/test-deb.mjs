#!/usr/bin/env node
// make deb-test: the Debian package on a clean Debian 12. An mmdebstrap root (minbase bookworm
// from apt's mirror: no node, no compiler, nothing of ours) in a private mount namespace (its
// /proc, /sys, a bpffs of its own, /dev; all gone when this exits):
//   1. apt-get install ./tcpdwell_*.deb resolves the dependencies and runs postinst: the files,
//      the tcpdwell user, the agent's unit enabled, conffiles 0600 / 0640;
//   2. the agent runs from the package as its unit runs it (ExecStart, the unit's capability
//      bounding set, no_new_privs) on the bundled Node 24, against a real nats-server (the
//      stream made centrally, as a fleet does) and a real workload: its events reach the stream,
//      /healthz and /readyz answer, it pins its state and stops cleanly on SIGTERM;
//   3. apt-get purge removes every file, the pins, the user and the unit links.
// There is no systemd to start the unit with here (PID 1 is not systemd on these machines), so
// step 2 runs its ExecStart the way systemd would. Needs root and apt's mirror.
//   node scripts/test-deb.mjs packages/tcpdwell_VERSION_ARCH.deb
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const deb = resolve(process.argv[2] ?? '');
if (!existsSync(deb)) {
  console.error('usage: node scripts/test-deb.mjs PACKAGE.deb (make deb-test builds it first)');
  process.exit(2);
}
for (const [tool, pkg] of [['mmdebstrap', 'mmdebstrap'], ['unshare', 'util-linux']]) {
  if (spawnSync(tool, ['--version']).error) {
    console.error(`deb-test: ${tool} is missing: apt-get install ${pkg}`);
    process.exit(1);
  }
}
// Everything below runs in a mount namespace of its own: mounts into the root vanish with it.
if (!process.env.TCPDWELL_DEBTEST_NS) {
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', process.execPath, fileURLToPath(import.meta.url), deb], {
    stdio: 'inherit',
    env: { ...process.env, TCPDWELL_DEBTEST_NS: '1' },
  });
  process.exit(r.status ?? 1);
}
const { checkRun, natsWithStream, report, sh, waitForLine, workload } = await import('./package-checks.mjs');

const r = report('deb-test');
const work = mkdtempSync('/var/tmp/tcpdwell-debtest-');
const root = join(work, 'root');
const netns = `tcpdwell-debtest-${process.pid}`;
const PORT = 8951;
const inRoot = (...args) => sh('chroot', [root, ...args], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' } });
/** Whether a path is there in the root (a symbolic link counts: its absolute target is the root's, not ours). */
const present = (p) => {
  try {
    lstatSync(join(root, p));
    return true;
  } catch {
    return false;
  }
};
let nats = null;
let agent = null;
const cleanup = async () => {
  if (agent && agent.exitCode === null) agent.kill('SIGKILL');
  spawnSync('ip', ['netns', 'del', netns]);
  await nats?.stop();
  for (const m of ['sys', 'proc', 'dev']) spawnSync('umount', ['-R', join(root, m)]);
  rmSync(work, { recursive: true, force: true });
};

try {
  r.step('a clean Debian 12 root (mmdebstrap --variant=minbase bookworm)');
  sh('mmdebstrap', ['--quiet', '--variant=minbase', 'bookworm', root], { stdio: ['ignore', 'ignore', 'inherit'] });
  r.check(!existsSync(join(root, 'usr/bin/node')), 'no node in the root before the package');
  copyFileSync('/etc/resolv.conf', join(root, 'etc/resolv.conf'));
  sh('mount', ['-t', 'proc', 'proc', join(root, 'proc')]);
  sh('mount', ['--rbind', '/sys', join(root, 'sys')]);
  sh('mount', ['-t', 'bpf', 'bpf', join(root, 'sys/fs/bpf')]); // a bpffs of its own: the host's pins are not touched
  sh('mount', ['--rbind', '/dev', join(root, 'dev')]);

  r.step('apt-get install ./tcpdwell.deb');
  copyFileSync(deb, join(root, 'tmp/tcpdwell.deb'));
  inRoot('apt-get', 'update', '-qq');
  inRoot('apt-get', 'install', '-y', '-qq', '--no-install-recommends', '/tmp/tcpdwell.deb');
  r.check(/Status: install ok installed/.test(inRoot('dpkg', '-s', 'tcpdwell')), 'dpkg says it is installed');
  r.check(inRoot('getent', 'passwd', 'tcpdwell').startsWith('tcpdwell:'), 'the tcpdwell system user exists (the collector runs as it)');
  const wants = 'etc/systemd/system/multi-user.target.wants';
  r.check(present(`${wants}/tcpdwell.service`) && readlinkSync(join(root, wants, 'tcpdwell.service')) === '/lib/systemd/system/tcpdwell.service', 'tcpdwell.service is enabled');
  r.check(!present(`${wants}/tcpdwell-collect.service`), 'tcpdwell-collect.service is not (a fleet runs a few)');
  r.check(present('usr/bin/tcpdwell') && readlinkSync(join(root, 'usr/bin/tcpdwell')) === '/opt/tcpdwell/bin/tcpdwell', '/usr/bin/tcpdwell is there');
  r.check(inRoot('stat', '-c', '%a %U:%G', '/etc/tcpdwell/agent.json').trim() === '600 root:root', 'agent.json is root-only (0600)');
  r.check(inRoot('stat', '-c', '%a %U:%G', '/etc/tcpdwell/collect.json').trim() === '640 root:tcpdwell', 'collect.json is readable by the tcpdwell group (0640)');
  const version = inRoot('tcpdwell', '--version').trim();
  r.check(/^tcpdwell \S+ \(Node\.js 24\./.test(version), `tcpdwell --version runs on the bundled Node 24: ${version}`);

  r.step("the agent from the package, as its unit's ExecStart, capability bounding set and no_new_privs run it");
  nats = await natsWithStream(join(work, 'nats'));
  const metricsPort = 20000 + (process.pid % 9000);
  writeFileSync(join(root, 'etc/tcpdwell/agent.json'), JSON.stringify({ host: 'debtest', nats: { servers: [nats.url] }, metrics: { listen: `127.0.0.1:${metricsPort}` } }));
  const unit = readFileSync(join(root, 'lib/systemd/system/tcpdwell.service'), 'utf8');
  const exec = /^ExecStart=(.*)$/m.exec(unit)[1].split(/\s+/);
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)[1].split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
  mkdirSync(join(root, 'var/lib/tcpdwell'), { recursive: true, mode: 0o700 }); // what StateDirectory= makes
  agent = spawn('chroot', [root, 'setpriv', '--no-new-privs', `--bounding-set=-all,${caps}`, '--inh-caps=-all', ...exec], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  let log = '';
  agent.stderr.on('data', (d) => (log += d));
  r.check(await waitForLine(() => log, 'publishing to tcpdwell.v1.debtest.', agent), 'the agent started and publishes');
  workload(netns, PORT);
  const pinned = existsSync(join(root, 'sys/fs/bpf/tcpdwell')) ? readdirSync(join(root, 'sys/fs/bpf/tcpdwell')) : [];
  r.check(pinned.length > 0, `per-socket state pinned in bpffs (${pinned.join(', ')})`);
  await checkRun(r, {
    nats,
    port: PORT,
    metricsPort,
    log: () => log,
    stop: () => {
      agent.kill('SIGTERM');
      return new Promise((res) => agent.on('close', res));
    },
  });

  r.step('apt-get purge tcpdwell');
  inRoot('apt-get', 'purge', '-y', '-qq', 'tcpdwell');
  const paths = ['opt/tcpdwell', 'etc/tcpdwell', 'var/lib/tcpdwell', 'usr/bin/tcpdwell', 'lib/systemd/system/tcpdwell.service', 'lib/systemd/system/tcpdwell-collect.service', 'usr/share/tcpdwell', 'usr/share/doc/tcpdwell', 'sys/fs/bpf/tcpdwell'];
  const left = paths.filter(present);
  const links = spawnSync('find', [join(root, 'etc/systemd'), '-name', '*tcpdwell*'], { encoding: 'utf8' }).stdout.trim();
  r.check(left.length === 0, `no file left${left.length ? `: ${left.join(', ')}` : ''}`);
  r.check(links === '', `no unit link left${links ? `: ${links}` : ''}`);
  r.check(spawnSync('chroot', [root, 'getent', 'passwd', 'tcpdwell']).status !== 0, 'the tcpdwell user is gone');
  r.check(spawnSync('chroot', [root, 'getent', 'group', 'tcpdwell']).status !== 0, 'the tcpdwell group is gone');
  r.check(spawnSync('chroot', [root, 'dpkg', '-s', 'tcpdwell']).status !== 0, 'dpkg no longer knows it');
} catch (err) {
  r.failures++;
  console.error(`deb-test: ${err.message}${err.stderr ? `\n${err.stderr}` : ''}`);
} finally {
  await cleanup();
}
r.step(r.failures ? `${r.failures} checks failed` : 'all checks passed');
process.exit(r.failures ? 1 : 0);
