/**
 * Least privilege, end to end: the agent runs as a non-root uid holding only the documented
 * capabilities (ambient, through setpriv), traces and publishes to a real nats-server, and
 * has dropped them after start (/proc/PID/status and every thread's status).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { kernelAvailable, TestNetns } from '../kernel/helpers.js';
import { readStream, startNats, transitionEvents, type TestNats } from './helpers.js';
import { removePinned } from '../../src/kernel/pins.js';
import { bpfCallsNeedCapBpf } from '../../src/kernel/privileges.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const NOBODY = 65534;
/** The documented start set (src/privileges.ts); CAP_SETPCAP is optional and left out here. */
const START_CAPS = ['bpf', 'perfmon', 'syslog', 'sys_admin', 'sys_ptrace'];
const CAP_BIT = { CAP_SYS_PTRACE: 19, CAP_SYS_ADMIN: 21, CAP_BPF: 39 } as const;
const asRoot = process.getuid?.() === 0;

function capField(status: string, field: string): bigint {
  return BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]}`);
}

describe.skipIf(!kernelAvailable || !asRoot)('tcpdwell run as a non-root uid with only the documented capabilities', () => {
  let nats: TestNats;
  let netns: TestNetns;
  let dir: string;
  let pinDir: string;
  let child: ChildProcess | null = null;

  beforeEach(async () => {
    nats = await startNats();
    netns = new TestNetns();
    dir = mkdtempSync(join(tmpdir(), 'tcpdwell-caps-'));
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'spool'));
    chownSync(join(dir, 'spool'), NOBODY, NOBODY);
    // A real bpffs root is 0700 root: the operator (here: the test) creates the agent's directory.
    pinDir = `/sys/fs/bpf/tcpdwell-caps-${process.pid}`;
    mkdirSync(pinDir, { recursive: true, mode: 0o700 });
    chownSync(pinDir, NOBODY, NOBODY);
  });

  afterEach(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    netns?.delete();
    await nats?.cleanup();
    removePinned(pinDir);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (host: string, extra: string[] = [], capList = START_CAPS) => {
    const caps = capList.map((c) => `+${c}`).join(',');
    child = spawn(
      'setpriv',
      [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', `--inh-caps=-all,${caps}`, `--ambient-caps=-all,${caps}`,
        bin, 'run', '--nats', nats.url, '--spool-dir', join(dir, 'spool'), '--pin-dir', pinDir, '--netns', netns.name,
        '--host', host, '--status-interval', '60', '--create-stream', ...extra],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    const c = child;
    const ready = new Promise<void>((resolve, reject) => {
      c.stderr!.on('data', (d) => (err += d) && err.includes('publishing to') && resolve());
      c.on('close', (code) => reject(new Error(`agent exited (${code}) before it was ready:\n${err}`)));
    });
    const closed = new Promise<number | null>((resolve) => c.on('close', (code) => resolve(code)));
    return { pid: c.pid!, ready, closed, err: () => err };
  };

  it('traces and publishes, and holds no capability after start (every thread it can reach)', async () => {
    const agent = start('caps');
    await agent.ready;
    const status = readFileSync(`/proc/${agent.pid}/status`, 'utf8');
    expect(/^Uid:\s+65534\b/m.test(status)).toBe(true);
    const expected = bpfCallsNeedCapBpf() ? 1n << BigInt(CAP_BIT.CAP_BPF) : 0n;
    expect(capField(status, 'CapEff')).toBe(expected);
    expect(capField(status, 'CapPrm')).toBe(expected);
    expect(capField(status, 'CapAmb')).toBe(0n);
    // Capabilities are per thread: all of them dropped, but for threads that block every signal
    // (Node's inspector signal thread), which the agent reports.
    const kept = readdirSync(`/proc/${agent.pid}/task`).filter((t) => capField(readFileSync(`/proc/${agent.pid}/task/${t}/status`, 'utf8'), 'CapEff') !== expected);
    for (const t of kept) expect(capField(readFileSync(`/proc/${agent.pid}/task/${t}/status`, "utf8"), "SigBlk") & 0xfffffffc00000000n).toBe(0xfffffffc00000000n);
    expect(kept.length).toBeLessThanOrEqual(1);
    expect(agent.err()).toMatch(/capabilities after start: (none|CAP_BPF) \(dropped \d+\)/);

    await netns.run('client-first', '127.0.0.1', 8601);
    await sleep(400);
    child!.kill('SIGTERM');
    expect(await agent.closed).toBe(0);
    const msgs = await readStream(nats.url);
    // TIME_WAIT included: the timer programs found tw_timer_handler (CAP_SYSLOG at load).
    expect(transitionEvents(msgs).map((e) => e.type)).toContain('timewait_start');
    expect(transitionEvents(msgs)).toHaveLength(13); // EVENTS_PER_CONNECTION + 2 less the accept(): a non-root agent cannot read tracefs
    expect(msgs.some((m) => m.kind === 'summary')).toBe(true);
  });

  it('--resnapshot keeps exactly CAP_SYS_ADMIN and CAP_SYS_PTRACE, and a snapshot of another namespace then works on request', async () => {
    const agent = start('resnap', ['--resnapshot']);
    await agent.ready;
    const status = readFileSync(`/proc/${agent.pid}/status`, 'utf8');
    const base = (1n << BigInt(CAP_BIT.CAP_SYS_ADMIN)) | (1n << BigInt(CAP_BIT.CAP_SYS_PTRACE));
    expect(capField(status, 'CapEff')).toBe(base | (bpfCallsNeedCapBpf() ? 1n << BigInt(CAP_BIT.CAP_BPF) : 0n));
    const hold = netns.start('mix', '127.0.0.1', 8611, '1,0,0'); // one ESTABLISHED pair
    await hold.ready;
    const nc = await connect({ servers: nats.url });
    try {
      const r = (await nc.request('tcpdwell.control.resnap.snapshot', '', { timeout: 5000 })).json<{ sockets: number }>();
      expect(r.sockets).toBeGreaterThanOrEqual(3); // listener + both ends
    } finally {
      await nc.close();
      await hold.stop();
    }
    child!.kill('SIGTERM');
    expect(await agent.closed).toBe(0);
  });

  it('without --resnapshot a later snapshot skips other namespaces and says why, instead of failing', async () => {
    const agent = start('nosnap');
    await agent.ready;
    const nc = await connect({ servers: nats.url });
    try {
      const r = (await nc.request('tcpdwell.control.nosnap.snapshot', '', { timeout: 5000 })).json<{ sockets: number }>();
      expect(r.sockets).toBe(0);
    } finally {
      await nc.close();
    }
    child!.kill('SIGTERM');
    expect(await agent.closed).toBe(0);
    expect(agent.err()).toMatch(/snapshot: 1 other network namespaces skipped \(capabilities dropped; start with --resnapshot/);
  });

  it('without CAP_SYSLOG it refuses to start in one line, rather than lose every TIME_WAIT silently', async () => {
    const agent = start('nosyslog', [], START_CAPS.filter((c) => c !== 'syslog'));
    await expect(agent.ready).rejects.toThrow(/needs CAP_SYSLOG to resolve tw_timer_handler/);
    expect(await agent.closed).toBe(1);
    expect(agent.err().trim().split('\n')).toHaveLength(1);
  });
});
