import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CAPABILITY_NAMES, capabilities, dropCapabilities } from 'bpf-ts-loader';

/** Runs `code` in a fresh node (dropping is irreversible: never in the test worker itself). */
function inChild(code: string, args: string[] = []): { status: number | null; out: any; stderr: string } {
  const r = spawnSync(process.execPath, ['-e', code, ...args], { encoding: 'utf8', timeout: 20_000, cwd: new URL('..', import.meta.url).pathname });
  return { status: r.status, out: r.stdout.trim() ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

const CHILD = `
const { dropCapabilities, capabilities } = require('./index.js');
const fs = require('node:fs');
fs.readFile('/etc/hostname', () => {}); // starts libuv's threadpool: its threads must drop too
setTimeout(() => {
  const before = capabilities();
  const r = dropCapabilities(JSON.parse(process.argv[1]), { bounding: process.argv[2] === 'bounding' });
  const threads = fs.readdirSync('/proc/self/task').map((tid) => ({ tid: Number(tid), ...capabilities(Number(tid)) }));
  console.log(JSON.stringify({ before, r, threads, after: capabilities() }));
}, 100);
`;

describe('capabilities() and dropCapabilities()', () => {
  it('names are the kernel numbering, and capabilities() reads the sets of this thread', () => {
    expect(CAPABILITY_NAMES[0]).toBe('CAP_CHOWN');
    expect(CAPABILITY_NAMES[21]).toBe('CAP_SYS_ADMIN');
    expect(CAPABILITY_NAMES[38]).toBe('CAP_PERFMON');
    expect(CAPABILITY_NAMES[39]).toBe('CAP_BPF');
    const c = capabilities();
    expect(Object.keys(c).sort()).toEqual(['ambient', 'bounding', 'effective', 'inheritable', 'permitted']);
    if (process.getuid?.() === 0) expect(c.effective).toContain('CAP_SYS_ADMIN');
  });

  it('bad names are Usage TypeErrors that list the known names, before anything is dropped', () => {
    expect(() => dropCapabilities(['CAP_NOPE'])).toThrow(/^Usage: unknown capability "CAP_NOPE" \(known: CAP_CHOWN, /);
    expect(() => dropCapabilities('CAP_BPF' as unknown as string[])).toThrow(TypeError);
    expect(() => dropCapabilities([], { bounding: 'yes' as unknown as boolean })).toThrow(/bounding must be a boolean/);
  });

  it.skipIf(process.getuid?.() !== 0)('drops from every thread it can reach: effective, permitted, inheritable and bounding', () => {
    const r = inChild(CHILD, [JSON.stringify(['CAP_SYS_BOOT', 'mknod', 'CAP_BPF']), 'bounding']);
    expect(r.status, r.stderr).toBe(0);
    const { before, r: result, threads, after } = r.out;
    expect(before.effective).toContain('CAP_SYS_BOOT');
    expect(result.dropped).toEqual(['CAP_SYS_BOOT', 'CAP_MKNOD', 'CAP_BPF']);
    expect(result.bounding).toBe(true);
    for (const set of ['effective', 'permitted', 'bounding']) {
      expect(after[set]).not.toContain('CAP_SYS_BOOT');
      expect(after[set]).not.toContain('CAP_BPF');
    }
    expect(after.effective).toContain('CAP_SYS_ADMIN'); // only what was named
    expect(threads.length).toBeGreaterThan(4);
    const reached = threads.filter((t: { tid: number }) => !result.unreached.includes(t.tid));
    expect(result.threads).toBe(reached.length);
    for (const t of reached) expect(t.effective, `thread ${t.tid}`).not.toContain('CAP_MKNOD');
    // Only a thread that blocks all signals (Node's inspector thread) may be out of reach.
    expect(result.unreached.length).toBeLessThanOrEqual(1);
  });

  it.skipIf(process.getuid?.() !== 0)('without bounding: the bounding set stays, the effective set drops', () => {
    const r = inChild(CHILD, [JSON.stringify(['CAP_SYS_BOOT']), 'no']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.out.r.bounding).toBe(false);
    expect(r.out.after.bounding).toContain('CAP_SYS_BOOT');
    expect(r.out.after.effective).not.toContain('CAP_SYS_BOOT');
  });

  it.skipIf(process.getuid?.() !== 0)('a dropped capability is really gone: a privileged call then fails with EPERM', () => {
    const code = `
      const { dropCapabilities } = require('./index.js');
      const fs = require('node:fs');
      dropCapabilities(['CAP_CHOWN']);
      try { fs.chownSync(process.argv[1], 12345, 12345); console.log(JSON.stringify('chowned')); }
      catch (e) { console.log(JSON.stringify(e.code)); }`;
    const file = `/tmp/bpf-ts-loader-caps-${process.pid}`;
    writeFileSync(file, '');
    try {
      expect(inChild(code, [file]).out).toBe('EPERM');
    } finally {
      rmSync(file);
    }
  });
});
