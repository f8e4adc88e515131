import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kernelAvailable, TestNetns } from './helpers.js';
import { decodeRingBatch, toJson, type TcpEvent } from '../../src/decode/index.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

function trace(args: string[]) {
  const child = spawn(bin, ['trace', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  // trace says on stderr when its programs are attached and the snapshot is out.
  const ready = new Promise<void>((resolve) => {
    child.stderr.on('data', () => {
      if (stderr.includes('tracing TCP state transitions')) resolve();
    });
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, ready, done };
}

describe.skipIf(!kernelAvailable)('tcpdwell trace, end to end', () => {
  it('prints JSON lines with every documented field, then a final count on stderr, and exits 0', async () => {
    const netns = new TestNetns();
    try {
      const t = trace(['--netns', netns.name, '--format', 'json', '--duration', '3']);
      await t.ready;
      const w = await netns.run('refused', '127.0.0.1', 8301);
      await netns.run('client-first', '127.0.0.1', 8302);
      const r = await t.done;
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      const fail = lines.find((l) => l.type === 'transition' && l.oldState === 'SYN_SENT' && l.newState === 'CLOSE');
      expect(fail).toMatchObject({ error: 'ECONNREFUSED', dport: 8301, family: 'inet', ownerPid: w.pid, ownerComm: 'node' });
      for (const key of ['type', 'tsNs', 'cookie', 'netns', 'family', 'saddr', 'sport', 'daddr', 'dport', 'oldState', 'newState', 'dwellNs', 'pid', 'comm', 'ownerPid', 'ownerComm', 'cgroupId', 'error']) {
        expect(fail).toHaveProperty(key);
      }
      expect(typeof fail.tsNs).toBe('string');
      expect(typeof fail.cookie).toBe('string');
      expect(fail.netns).toBe(netns.ns.inode);
      const tw = lines.find((l) => l.type === 'timewait_start');
      expect(tw).toMatchObject({ substate: 'TIME_WAIT', dport: 8302 });
      const m = /(\d+) events seen, (\d+) lost/.exec(r.stderr);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBe(lines.length);
      expect(Number(m![2])).toBe(0);
    } finally {
      netns.delete();
    }
  });

  it('--format raw records kernel batches that decode to exactly what --format json printed', async () => {
    const netns = new TestNetns();
    try {
      // Two tracers on the same traffic: raw bytes to a pipe, JSON lines beside it.
      const raw = spawn(bin, ['trace', '--netns', netns.name, '--format', 'raw', '--duration', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      let rawErr = '';
      raw.stdout.on('data', (d: Buffer) => chunks.push(d));
      raw.stderr.on('data', (d) => (rawErr += d));
      const rawDone = new Promise<number | null>((resolve) => raw.on('close', resolve));
      const json = trace(['--netns', netns.name, '--format', 'json', '--duration', '4']);
      await json.ready;
      while (!rawErr.includes('tracing TCP state transitions')) await new Promise((r) => setTimeout(r, 50));
      await netns.run('client-first', '127.0.0.1', 8305);
      await netns.run('refused', '127.0.0.1', 8306);
      expect(await rawDone).toBe(0);
      const j = await json.done;
      const events: TcpEvent[] = [];
      const stats = { records: 0, malformed: 0 };
      decodeRingBatch(Buffer.concat(chunks), (e) => events.push(e), stats);
      expect(stats.malformed).toBe(0);
      expect(Number(/(\d+) events seen, 0 lost/.exec(rawErr)?.[1])).toBe(events.length);
      // Each tracer's program stamps its own time: compare what happened, to which socket.
      const key = (o: Record<string, unknown>) => `${o.type} ${o.cookie} ${o.oldState ?? ''} ${o.newState ?? o.state ?? ''} ${o.sport} ${o.dport} ${o.error}`;
      const fromJson = j.stdout.trim().split('\n').map((l) => key(JSON.parse(l)));
      const fromRaw = events.map((e) => key(toJson(e)));
      expect(fromRaw.filter((k) => k.startsWith('transition')).length).toBeGreaterThanOrEqual(10);
      expect(new Set(fromRaw)).toEqual(new Set(fromJson));
    } finally {
      netns.delete();
    }
  });

  it('stops on SIGINT, drains, and exits 0 with its final line', async () => {
    const netns = new TestNetns();
    try {
      const t = trace(['--netns', netns.name, '--format', 'text', '--no-snapshot']);
      await t.ready;
      await netns.run('rst', '127.0.0.1', 8303);
      t.child.kill('SIGINT');
      const r = await t.done;
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^TIME\s+EVENT/);
      expect(r.stdout).toMatch(/ESTABLISHED->CLOSE/);
      expect(r.stderr).toMatch(/tcpdwell trace: \d+ events seen, 0 lost/);
    } finally {
      netns.delete();
    }
  });
});
