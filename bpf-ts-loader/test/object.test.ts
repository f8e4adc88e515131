import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { BpfError, BpfLoadError, BpfObject } from 'bpf-ts-loader';
import { MAIN_OBJ, REJECTED_OBJ, describeBpf, u32, u64 } from './helpers.js';

describeBpf('BpfObject: open / inspect / close', () => {
  it('open() on a missing file throws a BpfError with ENOENT and advice', () => {
    const missing = '/nonexistent/dir/nothing.bpf.o';
    const err = catchErr(() => BpfObject.open(missing));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ errno: 2, code: 'ENOENT' });
    expect(err.message).toContain(missing);
    expect(err.message).toMatch(/does not exist/);
    expect((err as Error).cause).toBeInstanceOf(Error);
  });

  it('open() on a non-ELF file says it is not a BPF object', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bpf-ts-loader-'));
    const file = join(dir, 'not-elf.o');
    writeFileSync(file, 'definitely not an ELF file\n');
    try {
      const err = catchErr(() => BpfObject.open(file));
      expect(err).toBeInstanceOf(BpfError);
      expect(err.code).toBe('LIBBPF_ERRNO__FORMAT');
      expect(err.message).toMatch(/not a valid BPF ELF object/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('bad arguments throw Usage TypeErrors', () => {
    expect(() => BpfObject.open(42 as unknown as string)).toThrow(/^Usage: /);
    const obj = BpfObject.open(MAIN_OBJ);
    try {
      expect(() => obj.map('nope')).toThrow(TypeError);
      expect(() => obj.map('nope')).toThrow(/known maps: 'events', 'quiet', 'counts', 'kv'/);
      expect(() => obj.attach('nope')).toThrow(/known programs: 'on_sys_enter'/);
      expect(() => obj.setMaxEntries('kv', -1)).toThrow(/^Usage: /);
      expect(() => obj.openRingBuffer('kv', () => {})).toThrow(/not a ringbuf/);
      expect(() => obj.runIterator('on_sys_enter')).toThrow(/not an iter/);
    } finally {
      obj.close();
    }
  });

  it('lists the programs, maps and constants the fixture declares', () => {
    const obj = BpfObject.open(MAIN_OBJ);
    try {
      expect(obj.path).toBe(MAIN_OBJ);
      expect(obj.programs()).toEqual([
        { name: 'on_sys_enter', section: 'tp_btf/sys_enter', autoload: true },
        { name: 'on_exit_disabled', section: 'tp_btf/sched_process_exit', autoload: false },
        { name: 'dump_task', section: 'iter/task', autoload: true },
        { name: 'dump_tcp_ports', section: 'iter/tcp', autoload: true },
      ]);
      const maps = Object.fromEntries(obj.maps().map((m) => [m.name, m]));
      expect(maps.events).toMatchObject({ typeName: 'ringbuf', type: 27, maxEntries: 1 << 20 });
      expect(maps.quiet).toMatchObject({ typeName: 'ringbuf', maxEntries: 1 << 16 });
      expect(maps.counts).toMatchObject({ typeName: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: 1 });
      expect(maps.kv).toMatchObject({ typeName: 'hash', type: 1, keySize: 4, valueSize: 8, maxEntries: 128 });
      // internal maps are listed too
      expect(Object.keys(maps)).toEqual(expect.arrayContaining(['main.rodata', 'main.bss', 'main.data']));
      const consts = obj.constants();
      expect(consts).toEqual(expect.arrayContaining([
        { name: 'target_tgid', section: '.rodata', offset: 0, size: 4 },
        { name: 'blob_salt', section: '.rodata', offset: 8, size: 8 },
        { name: 'count_enabled', section: '.rodata', offset: 16, size: 1 },
        { name: 'next_seq', section: '.bss', offset: 0, size: 8 },
        { name: 'data_marker', section: '.data', offset: 0, size: 4 },
      ]));
    } finally {
      obj.close();
    }
  });

  it('close() is idempotent and later calls throw ERR_BPF_CLOSED', () => {
    const obj = BpfObject.open(MAIN_OBJ);
    obj.close();
    obj.close();
    const err = catchErr(() => obj.programs());
    expect(err).toBeInstanceOf(BpfError);
    expect(err.code).toBe('ERR_BPF_CLOSED');
  });

  it('setConstants() validates names, sizes and ranges before writing anything', () => {
    const obj = BpfObject.open(MAIN_OBJ);
    try {
      const unknown = catchErr(() => obj.setConstants({ no_such_var: 1 }));
      expect(unknown).toBeInstanceOf(TypeError);
      expect(unknown.message).toMatch(/^Usage: .*'no_such_var'.*known: .*'target_tgid'.*'blob_salt'/);
      expect(() => obj.setConstants({ target_tgid: Buffer.alloc(3) })).toThrow(/4 bytes, got a Buffer of 3/);
      expect(() => obj.setConstants({ target_tgid: 2 ** 32 })).toThrow(/does not fit/);
      expect(() => obj.setConstants({ target_tgid: 1.5 })).toThrow(TypeError);
      expect(() => obj.setConstants({ blob_salt: 1n << 64n })).toThrow(/does not fit/);
      // a valid entry next to an invalid one is not written: the rodata image is unchanged
      expect(() => obj.setConstants({ data_marker: 7, target_tgid: 'x' as unknown as number })).toThrow(TypeError);
      obj.setConstants({ data_marker: 9, blob_salt: -1n, count_enabled: true, target_tgid: Buffer.from([1, 2, 3, 4]) });
      obj.load();
      const bss = obj.map('main.data').lookup(u32(0));
      expect(bss?.readUInt32LE(0)).toBe(9);
      const ro = obj.map('main.rodata').lookup(u32(0))!;
      expect(ro.readUInt32LE(0)).toBe(0x04030201);
      expect(ro.readBigUInt64LE(8)).toBe(0xffffffffffffffffn);
      expect(ro[16]).toBe(1);
      expect(() => obj.setConstants({ target_tgid: 1 })).toThrow(/before load\(\)/);
    } finally {
      obj.close();
    }
  });

  it('a program the verifier rejects gives BpfLoadError with errno and the verifier log', () => {
    const obj = BpfObject.open(REJECTED_OBJ);
    try {
      const err = catchErr(() => obj.load()) as BpfLoadError;
      expect(err).toBeInstanceOf(BpfLoadError);
      expect(err).toBeInstanceOf(BpfError);
      expect(err.errno).toBe(13);
      expect(err.code).toBe('EACCES');
      expect(err.message).toMatch(/EACCES/);
      expect(err.message).toMatch(/invalid mem access 'map_value_or_null'/);
      expect(err.message).toMatch(/verifierLog/);
      expect(err.verifierLog).toMatch(/BEGIN PROG LOAD LOG/);
      expect(err.verifierLog).toMatch(/processed \d+ insns/);
      expect(() => obj.load()).toThrow(/only once/);
    } finally {
      obj.close();
    }
  });

  it('setAutoload(false) keeps the rejected program out, so the rest loads', () => {
    const obj = BpfObject.open(REJECTED_OBJ);
    try {
      obj.setAutoload('unchecked', false);
      obj.load();
      expect(obj.programs().map((p) => [p.name, p.autoload])).toEqual([['fine', true], ['unchecked', false]]);
      expect(() => obj.setAutoload('fine', false)).toThrow(BpfError); // too late after load
      obj.attachAll(); // attaches 'fine' only
      expect(() => obj.attach('unchecked')).toThrow(/not loaded/);
      expect(() => obj.attach('fine')).toThrow(/already attached/);
    } finally {
      obj.close();
    }
  });

  it('setMaxEntries() applies: maps() shows it and the kernel map holds that many entries', () => {
    const small = BpfObject.open(MAIN_OBJ);
    const big = BpfObject.open(MAIN_OBJ);
    try {
      big.setMaxEntries('kv', 300);
      expect(big.maps().find((m) => m.name === 'kv')?.maxEntries).toBe(300);
      small.load();
      big.load();
      expect(big.maps().find((m) => m.name === 'kv')?.maxEntries).toBe(300);
      expect(big.map('kv').maxEntries).toBe(300);
      for (let i = 0; i < 300; i++) big.map('kv').update(u32(i), u64(i));
      expect(big.map('kv').keys()).toHaveLength(300);
      for (let i = 0; i < 128; i++) small.map('kv').update(u32(i), u64(i));
      const full = catchErr(() => small.map('kv').update(u32(128), u64(0)));
      expect(full).toMatchObject({ code: 'E2BIG' });
      expect(full.message).toMatch(/map is full/);
      expect(() => big.setMaxEntries('kv', 10)).toThrow(BpfError); // after load
    } finally {
      small.close();
      big.close();
    }
  });

  describePin();
});

function describePin() {
  const root = '/sys/fs/bpf';
  const dir = join(root, `bpf-ts-loader-test-${process.pid}-${Date.now()}`);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('setPinPath() pins on load and a second object reuses the pinned map', () => {
    ensureBpffs(root);
    mkdirSync(dir);
    const pin = join(dir, 'kv');
    const first = BpfObject.open(MAIN_OBJ);
    const second = BpfObject.open(MAIN_OBJ);
    try {
      first.setPinPath('kv', pin);
      first.load();
      expect(existsSync(pin)).toBe(true);
      first.map('kv').update(u32(77), u64(12345));
      first.close(); // closing does not unpin

      second.setPinPath('kv', pin);
      second.load();
      expect(second.map('kv').lookup(u32(77))?.readBigUInt64LE()).toBe(12345n);
      expect(() => second.setPinPath('kv', 42 as unknown as string)).toThrow(/^Usage: /);
    } finally {
      first.close();
      second.close();
      rmSync(pin, { force: true });
    }
    expect(statSync(dir).isDirectory()).toBe(true);
  });
}

function ensureBpffs(root: string) {
  const mounted = readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === root && l.split(' ')[2] === 'bpf');
  if (!mounted) execFileSync('mount', ['-t', 'bpf', 'bpf', root]);
}

function catchErr(fn: () => unknown): Error & { errno?: number; code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { errno?: number; code?: string };
  }
  throw new Error('expected an exception');
}
