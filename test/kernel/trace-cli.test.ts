import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kernelAvailable, TestNetns } from './helpers.js';

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
