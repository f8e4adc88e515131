/**
 * Deployment files: the systemd unit passes `systemd-analyze verify` and its capability set
 * really runs the agent (emulated with setpriv: uid 0, that bounding set, no_new_privs); the
 * Kubernetes manifest is checked for structure (parsed with Debian's python3-yaml, the one
 * YAML reader on these machines) and for agreement with the unit and the agent's flags.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { kernelAvailable, TestNetns, EVENTS_PER_CONNECTION } from '../kernel/helpers.js';
import { readStream, startNats, startNotifySocket, transitionEvents } from './helpers.js';
import { until } from './collect-helpers.js';
import { START_CAPABILITIES } from '../../src/kernel/privileges.js';
import { AGENT_METRICS_PORT } from '../../src/publish/metrics.js';
import { VERSION } from '../../src/common/version.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin/tcpdwell');
const UNIT = readFileSync(join(root, 'deploy/systemd/tcpdwell.service'), 'utf8');
const COLLECT_UNIT = readFileSync(join(root, 'deploy/systemd/tcpdwell-collect.service'), 'utf8');
const MANIFEST = join(root, 'deploy/kubernetes/daemonset.yaml');
const PREFIX = '/opt/tcpdwell';

/** key → values of the [Service] section (comments and continuation-free lines only). */
function unitService(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(t);
    if (s) section = s[1]!;
    else if (section === 'Service') {
      const [k, ...v] = t.split('=');
      out.set(k!, [...(out.get(k!) ?? []), v.join('=')]);
    }
  }
  return out;
}

/** The flags `tcpdwell run` knows, from its own --help. */
function runFlags(): Set<string> {
  const help = spawnSync(bin, ['run', '--help'], { encoding: 'utf8' }).stdout;
  return new Set([...help.matchAll(/(--[a-z-]+)/g)].map((m) => m[1]!));
}

const flagsOf = (args: string[]) => args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);

describe('deploy/systemd/tcpdwell.service', () => {
  it('passes systemd-analyze verify (which does complain about a broken unit)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-unit-'));
    try {
      const analyze = spawnSync('systemd-analyze', ['--version']);
      expect(analyze.status, 'systemd-analyze is missing: apt-get install systemd').toBe(0);
      // verify checks that ExecStart exists: point it at this checkout instead of the prefix.
      // The collector's unit (shipped by make deb) too.
      for (const [name, text] of [['tcpdwell.service', UNIT], ['tcpdwell-collect.service', COLLECT_UNIT]] as const) {
        writeFileSync(join(dir, name), text.replaceAll(`${PREFIX}/bin/tcpdwell`, bin));
        const r = spawnSync('systemd-analyze', ['verify', join(dir, name)], { encoding: 'utf8' });
        expect(r.status, name).toBe(0);
        expect(`${r.stdout}${r.stderr}`.trim(), name).toBe('');
      }
      const collect = unitService(COLLECT_UNIT);
      expect(collect.get('User')).toEqual(['tcpdwell']); // it needs no privilege at all
      expect(collect.get('CapabilityBoundingSet')).toEqual(['']);
      expect(collect.get('ExecStart')![0]!.split(/\s+/).slice(0, 2)).toEqual([`${PREFIX}/bin/tcpdwell`, 'collect']);
      // verify exits 0 on unknown keys and bad values, but says so: that is what is checked above.
      writeFileSync(join(dir, 'broken.service'), '[Service]\nExecStart=/bin/true\nNoNewPrivileges=perhaps\nCapabilityBoundingSett=CAP_BPF\n');
      const bad = spawnSync('systemd-analyze', ['verify', join(dir, 'broken.service')], { encoding: 'utf8' });
      expect(`${bad.stdout}${bad.stderr}`).toMatch(/Unknown key|Failed to parse/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is hardened with exactly the measured capabilities, and without the options that break BPF', () => {
    const s = unitService(UNIT);
    expect(s.get('CapabilityBoundingSet')![0]!.split(/\s+/).sort()).toEqual([...START_CAPABILITIES].sort());
    expect(s.get('NoNewPrivileges')).toEqual(['yes']);
    expect(s.get('ProtectSystem')).toEqual(['strict']);
    expect(s.get('ReadWritePaths')![0]!.split(/\s+/)).toContain('/sys/fs/bpf');
    expect(s.get('StateDirectory')).toEqual(['tcpdwell']);
    for (const k of ['ProtectHome', 'PrivateTmp']) expect(s.get(k)).toEqual(['yes']);
    // Each of these breaks the agent (see the comment in the unit).
    for (const k of ['ProtectKernelLogs', 'ProtectKernelTunables', 'ProtectProc', 'PrivateNetwork', 'PrivateUsers', 'MemoryDenyWriteExecute']) {
      expect(s.has(k), k).toBe(false);
    }
    // systemd's side of health: READY=1 and watchdog pings (src/agent/watchdog.ts), run below.
    expect(s.get('Type')).toEqual(['notify']);
    expect(s.get('NotifyAccess')).toEqual(['main']);
    expect(Number(/^(\d+)s$/.exec(s.get('WatchdogSec')![0]!)?.[1])).toBeGreaterThanOrEqual(10);
    const exec = s.get('ExecStart')![0]!.split(/\s+/);
    expect(exec[0]).toBe(`${PREFIX}/bin/tcpdwell`);
    expect(exec[1]).toBe('run');
    expect(exec[exec.indexOf('--spool-dir') + 1]).toMatch(/^\/var\/lib\/tcpdwell\//); // inside StateDirectory
    const known = runFlags();
    for (const f of flagsOf(exec)) expect(known, f).toContain(f);
  });

  it.skipIf(!kernelAvailable)("its capability set runs the agent: uid 0, that bounding set, no_new_privs; all dropped after start, bounding set included; READY=1 and the watchdog's pings still reach systemd's socket", async () => {
    const nats = await startNats();
    const netns = new TestNetns();
    const notify = await startNotifySocket();
    const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-unit-run-'));
    const service = unitService(UNIT);
    const caps = service.get('CapabilityBoundingSet')![0]!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
    // What systemd hands a Type=notify unit with WatchdogSec= (scaled down: pings every third of it).
    const env = { ...process.env, NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '900000' };
    const child = spawn('setpriv', ['--no-new-privs', `--bounding-set=-all,${caps}`, '--inh-caps=-all', bin, 'run', '--nats', nats.url, '--spool-dir', join(dir, 'spool'), '--no-pin', '--netns', netns.name, '--host', 'unit', '--status-interval', '60', '--create-stream'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
    });
    try {
      let err = '';
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d) => (err += d) && err.includes('publishing to') && resolve());
        child.on('close', (code) => reject(new Error(`agent exited ${code}: ${err}`)));
      });
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      expect(/^CapEff:\s*0+$/m.test(status), status).toBe(true);
      expect(/^CapBnd:\s*0+$/m.test(status), status).toBe(true);
      expect(/^NoNewPrivs:\s*1$/m.test(status)).toBe(true);
      await until(() => notify.messages.length > 0, 5000, 'READY=1');
      expect(notify.messages[0]).toBe('READY=1');
      const before = notify.messages.length;
      await until(() => notify.messages.slice(before).filter((m) => m === 'WATCHDOG=1').length >= 2, 5000, 'watchdog pings after the drop');
      await netns.run('client-first', '127.0.0.1', 8801);
      await sleep(400);
      child.kill('SIGTERM');
      expect(await new Promise((r) => child.on('close', r))).toBe(0);
      const events = transitionEvents(await readStream(nats.url));
      expect(events).toHaveLength(EVENTS_PER_CONNECTION + 2); // as root: the server's accept() is traced
      expect(events.filter((e) => e.type === 'accept')).toHaveLength(1);
      expect(events.some((e) => e.type === 'timewait_start')).toBe(true);
      await until(() => notify.messages.at(-1) === 'STOPPING=1', 2000, 'STOPPING=1');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      notify.close();
      netns.delete();
      await nats.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8s = any;

describe('deploy/kubernetes/daemonset.yaml', () => {
  const parsed = spawnSync('/usr/bin/python3', ['-c', 'import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))', MANIFEST], { encoding: 'utf8' });

  it('parses as YAML (python3-yaml) into a Namespace, ConfigMap, Secret and DaemonSet', () => {
    expect(parsed.status, `python3-yaml is needed (apt-get install python3-yaml): ${parsed.stderr}`).toBe(0);
    const docs: K8s[] = JSON.parse(parsed.stdout);
    expect(docs.map((d) => `${d.apiVersion}/${d.kind}`)).toEqual(['v1/Namespace', 'v1/ConfigMap', 'v1/Secret', 'apps/v1/DaemonSet']);
    for (const d of docs.slice(1)) expect(d.metadata.namespace).toBe(docs[0].metadata.name);
  });

  it('the DaemonSet: selector matches its pods, host namespaces and capabilities as measured, host paths for bpffs and the spool, NATS from a ConfigMap and a Secret', () => {
    const docs: K8s[] = JSON.parse(parsed.stdout);
    const ds = docs.find((d) => d.kind === 'DaemonSet');
    const pod = ds.spec.template.spec;
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) expect(ds.spec.template.metadata.labels[k]).toBe(v);
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBe(true);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    const sc = c.securityContext;
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false); // no_new_privs, as NoNewPrivileges=yes
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(START_CAPABILITIES.map((n) => n.replace(/^CAP_/, '')).sort());

    const volumes = new Map<string, K8s>(pod.volumes.map((v: K8s) => [v.name, v]));
    const mountOf = (path: string) => c.volumeMounts.find((m: K8s) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
    const arg = (flag: string) => c.args.find((a: string) => a.startsWith(`${flag}=`))?.split('=')[1];
    expect(volumes.get(mountOf('/sys/fs/bpf').name).hostPath.path).toBe('/sys/fs/bpf');
    expect(volumes.get(mountOf(arg('--pin-dir')).name).hostPath.path).toBe('/sys/fs/bpf');
    expect(volumes.get(mountOf(arg('--spool-dir')).name).hostPath).toBeDefined();
    for (const f of ['--nkey-seed', '--tls-ca']) {
      const v = volumes.get(mountOf(arg(f)).name);
      const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === v.secret.secretName);
      expect(secret, f).toBeDefined();
      expect(Object.keys(secret.stringData)).toContain(arg(f).split('/').pop());
    }
    const url = c.env.find((e: K8s) => e.name === 'TCPDWELL_NATS_URL').valueFrom.configMapKeyRef;
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === url.name);
    expect(cm.data[url.key]).toMatch(/^(nats|tls):\/\//);
    expect(c.env.find((e: K8s) => e.name === 'TCPDWELL_HOST').valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');

    // Probes: liveness and startup on /healthz, readiness on /readyz, on the port --metrics-listen serves.
    const metricsPort = c.ports.find((p: K8s) => p.name === 'metrics');
    expect(Number(arg('--metrics-listen').split(':').pop())).toBe(metricsPort.containerPort);
    expect(metricsPort.containerPort).toBe(AGENT_METRICS_PORT);
    for (const [probe, path] of [['livenessProbe', '/healthz'], ['startupProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
      expect(c[probe].httpGet, probe).toEqual({ path, port: 'metrics' });
    }

    // The image make image builds (scripts/make-image.sh names it), whose entrypoint is this command.
    expect(c.image).toBe(`localhost/tcpdwell:${VERSION}`);
    expect(c.command).toEqual([`${PREFIX}/bin/tcpdwell`]);
    expect(c.args[0]).toBe('run');
    const known = runFlags();
    for (const f of flagsOf(c.args)) expect(known, f).toContain(f);
  });
});
