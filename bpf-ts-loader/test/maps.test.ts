import { readFileSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import { BpfError, BpfObject } from 'bpf-ts-loader';
import { MAIN_OBJ, MODE_COUNT, describeBpf, trigger, u32, u64 } from './helpers.js';

let open: BpfObject[] = [];
afterEach(() => {
  for (const o of open) o.close();
  open = [];
});

function loaded(constants: Record<string, number | bigint | boolean> = {}, attach = false): BpfObject {
  const obj = BpfObject.open(MAIN_OBJ);
  open.push(obj);
  obj.setConstants(constants);
  obj.load();
  if (attach) obj.attachAll();
  return obj;
}

describeBpf('BpfMap', () => {
  it('hash map: update / lookup / delete / keys from user space', () => {
    const kv = loaded().map('kv');
    expect(kv).toMatchObject({ name: 'kv', typeName: 'hash', keySize: 4, valueSize: 8, perCpu: false });
    expect(kv.lookup(u32(1))).toBeUndefined();
    kv.update(u32(1), u64(100));
    kv.update(u32(2), u64(200), 'noexist');
    kv.update(u32(1), u64(101), 'exist');
    expect(kv.lookup(u32(1))?.readBigUInt64LE()).toBe(101n);
    expect(kv.keys().map((k) => k.readUInt32LE()).sort()).toEqual([1, 2]);

    expect(() => kv.update(u32(2), u64(0), 'noexist')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(() => kv.update(u32(3), u64(0), 'exist')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => kv.update(u32(3), u64(0), 'exist')).toThrow(BpfError);

    expect(kv.delete(u32(1))).toBe(true);
    expect(kv.delete(u32(1))).toBe(false);
    expect(kv.keys().map((k) => k.readUInt32LE())).toEqual([2]);

    expect(() => kv.lookup(Buffer.alloc(8))).toThrow(/^Usage: lookup\(key: Buffer of 4 bytes\)/);
    expect(() => kv.update(u32(1), Buffer.alloc(4))).toThrow(/^Usage: update/);
    expect(() => kv.update(u32(1), u64(1), 'sometimes' as 'any')).toThrow(/^Usage: /);
    expect(() => kv.lookupPerCpu(u32(1))).toThrow(/per-CPU/);
  });

  it('map access before load() is a clear error', () => {
    const obj = BpfObject.open(MAIN_OBJ);
    open.push(obj);
    const err = (() => { try { obj.map('kv').lookup(u32(0)); } catch (e) { return e as BpfError; } })();
    expect(err).toBeInstanceOf(BpfError);
    expect(err?.code).toBe('ERR_BPF_NOT_LOADED');
  });

  it('per-CPU array: lookupPerCpu() returns possibleCpus slots holding what the program counted', () => {
    const obj = loaded({ target_tgid: process.pid, count_enabled: true }, true);
    const counts = obj.map('counts');
    expect(counts.perCpu).toBe(true);
    expect(counts.possibleCpus).toBeGreaterThan(0);

    const N = 25;
    for (let i = 0; i < N; i++) trigger(MODE_COUNT, 1, 1000 + (i % 5));

    const raw = counts.lookup(u32(0))!;
    expect(raw.length).toBe(8 * counts.possibleCpus);
    const slots = counts.lookupPerCpu(u32(0))!;
    expect(slots).toHaveLength(counts.possibleCpus);
    expect(slots.every((s) => s.length === 8)).toBe(true);
    expect(slots.reduce((sum, s) => sum + s.readBigUInt64LE(), 0n)).toBe(BigInt(N));

    // the program also counted into the hash map, keyed by the pread64 offset
    const kv = obj.map('kv');
    expect(kv.keys().map((k) => k.readUInt32LE()).sort()).toEqual([1000, 1001, 1002, 1003, 1004]);
    expect(kv.lookup(u32(1003))?.readBigUInt64LE()).toBe(5n);

    // per-CPU update takes the full per-CPU image
    const image = Buffer.alloc(8 * counts.possibleCpus);
    image.writeBigUInt64LE(7n, 0);
    counts.update(u32(0), image);
    expect(counts.lookupPerCpu(u32(0))![0].readBigUInt64LE()).toBe(7n);
    expect(() => counts.update(u32(0), u64(1))).toThrow(/per-CPU/);
  });

  it('.rodata constants set before load decide what the program does', () => {
    // Same triggers, three objects: only the one whose pid filter and switch match counts.
    const wrongPid = loaded({ target_tgid: process.ppid, count_enabled: true }, true);
    const disabled = loaded({ target_tgid: process.pid, count_enabled: false }, true);
    const enabled = loaded({ target_tgid: process.pid, count_enabled: true }, true);
    for (let i = 0; i < 10; i++) trigger(MODE_COUNT, 1, 5);
    const total = (o: BpfObject) =>
      o.map('counts').lookupPerCpu(u32(0))!.reduce((s, b) => s + b.readBigUInt64LE(), 0n);
    expect(total(wrongPid)).toBe(0n);
    expect(total(disabled)).toBe(0n);
    expect(total(enabled)).toBe(10n);
  });

  it('runIterator() on iter/task returns what the program wrote, including this process', () => {
    const obj = loaded({}, true); // attachAll() leaves the iterator alone
    const out = obj.runIterator('dump_task').toString('utf8');
    const lines = out.trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    expect(lines).toContain(`${process.pid} ${process.pid} ${readComm()}`);
    expect(lines.every((l) => /^\d+ \d+ /.test(l))).toBe(true);
    // an iterator can be run repeatedly; a fresh link is made each time
    expect(obj.runIterator('dump_task').toString()).toContain(`${process.pid} ${process.pid} `);
  });
});

describeBpf('runIterator() in another network namespace', () => {
  it('walks the namespace named by netnsPath, and leaves this thread in its own', async () => {
    const { createServer } = await import('node:net');
    const { execFileSync } = await import('node:child_process');
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const ns = `bpf-ts-loader-t${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      const obj = loaded();
      const ports = (b: Buffer) => b.toString().trim().split('\n').filter(Boolean).map(Number);
      expect(ports(obj.runIterator('dump_tcp_ports'))).toContain(port);
      expect(ports(obj.runIterator('dump_tcp_ports', { netnsPath: `/run/netns/${ns}` }))).toEqual([]);
      // back home: the listener is visible again
      expect(ports(obj.runIterator('dump_tcp_ports', { netnsPath: '/proc/self/ns/net' }))).toContain(port);
      expect(ports(obj.runIterator('dump_tcp_ports'))).toContain(port);
      expect(() => obj.runIterator('dump_tcp_ports', { netnsPath: '/no/such/netns' })).toThrow(BpfError);
      expect(() => obj.runIterator('dump_tcp_ports', { netnsPath: '' })).toThrow(/Usage/);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
      server.close();
    }
  });
});

describeBpf('programStats()', () => {
  it('reports each loaded program, with run counts while kernel.bpf_stats_enabled is on', async () => {
    const { writeFileSync } = await import('node:fs');
    const obj = loaded({ target_tgid: process.pid, count_enabled: true }, true);
    const statsFile = '/proc/sys/kernel/bpf_stats_enabled';
    const before = readFileSync(statsFile, 'utf8').trim();
    writeFileSync(statsFile, '1');
    try {
      for (let i = 0; i < 5; i++) trigger(MODE_COUNT, 1, 5);
      const stats = obj.programStats();
      const s = stats.find((p) => p.name === 'on_sys_enter')!;
      expect(s.runCount).toBeGreaterThanOrEqual(5);
      expect(s.runTimeNs).toBeGreaterThan(0);
      expect(s.recursionMisses).toBeGreaterThanOrEqual(0);
      expect(stats.map((p) => p.name)).not.toContain('on_exit_disabled'); // not loaded
    } finally {
      writeFileSync(statsFile, before);
    }
  });
});

describeBpf('clockBoottimeNs()', () => {
  it('is CLOCK_BOOTTIME: close to /proc/uptime, and never goes back', async () => {
    const { clockBoottimeNs } = await import('bpf-ts-loader');
    const a = clockBoottimeNs();
    const uptimeS = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    const b = clockBoottimeNs();
    expect(b >= a).toBe(true);
    expect(Math.abs(Number(a) / 1e9 - uptimeS)).toBeLessThan(0.05);
  });
});

function readComm(): string {
  // task->comm of this thread group leader, as the kernel reports it
  return readFileSync('/proc/self/comm', 'utf8').trim();
}
