import { execFileSync } from 'node:child_process';
import { existsSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe } from 'vitest';

export const PKG_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const OUT_DIR = join(PKG_DIR, 'test', '.output');
export const MAIN_OBJ = join(OUT_DIR, 'main.bpf.o');
export const REJECTED_OBJ = join(OUT_DIR, 'rejected.bpf.o');

// Mirrors test/fixtures/fixture.h
export const MAGIC_FD = 0x7e000000;
export const MODE_EVENTS = 0;
export const MODE_QUIET = 1;
export const MODE_BLOB = 2;
export const MODE_COUNT = 3;
/** struct event in main.bpf.c: u64 seq, u32 tid, u32 index, u32 total (packed) */
export const EVENT_BYTES = 20;

const BTF = '/sys/kernel/btf/vmlinux';

function whyCannotRun(): string | undefined {
  if (process.platform !== 'linux') return `BPF needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return `not running as root (uid ${process.getuid?.()}); loading BPF needs root or CAP_BPF + CAP_PERFMON`;
  if (!existsSync(BTF)) return `kernel BTF ${BTF} is missing (kernel built without CONFIG_DEBUG_INFO_BTF)`;
  return undefined;
}

export const skipReason = whyCannotRun();

/**
 * describe() for tests that need real BPF. Without root/BTF they are skipped
 * with a loud warning — except under CI (env CI set), where they must fail.
 */
export function describeBpf(name: string, fn: () => void): void {
  if (skipReason && !process.env.CI) {
    console.warn(`\n${'!'.repeat(78)}\n!! bpf-ts-loader: SKIPPING "${name}": ${skipReason}.\n` +
      `!! These tests exercise the real kernel. Run them as root (e.g. sudo npx vitest run bpf-ts-loader/test).\n` +
      `!! With CI=1 set they fail instead of skipping.\n${'!'.repeat(78)}\n`);
    describe.skip(name, fn);
    return;
  }
  describe(name, () => {
    beforeAll(() => {
      if (skipReason) throw new Error(`bpf-ts-loader tests cannot run: ${skipReason} (CI is set, so this is a failure, not a skip)`);
      buildFixtures();
    });
    fn();
  });
}

let built = false;
export function buildFixtures(): void {
  if (built) return;
  // make is incremental; concurrent test files may race on the first build, so
  // outputs are written to a temp name and renamed (see Makefile).
  execFileSync('make', ['-s', '-C', PKG_DIR, 'fixtures'], { stdio: ['ignore', 'inherit', 'inherit'] });
  built = true;
}

/**
 * Drives the fixture: pread64(MAGIC_FD + mode, buf, count, pos) on a bogus fd.
 * The kernel fails it with EBADF, but sys_enter already saw the arguments.
 */
export function trigger(mode: number, count: number, pos: number): void {
  if (count < 1) throw new TypeError('trigger(): count must be >= 1 (a 0-byte readSync never reaches the kernel)');
  try {
    readSync(MAGIC_FD + mode, Buffer.alloc(count), 0, count, pos);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EBADF') throw err;
    return;
  }
  throw new Error(`fd ${MAGIC_FD + mode} unexpectedly exists`);
}

export async function waitFor(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
