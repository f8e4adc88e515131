/**
 * The kernel side, wired: opens bpf/tcpdwell.bpf.o through bpf-ts-loader, configures its
 * filters, loads and attaches it, and hands out raw batches. Bytes only — decoding lives in
 * decode.ts.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmdirSync, rmSync, statfsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BpfObject, BpfError, type RingBufferReader } from 'bpf-ts-loader';
import { COUNTERS_FIELDS, CONFIG_FIELDS, CONFIG_SIZE } from './generated/abi.js';
import { EnvironmentError, UsageError } from './errors.js';
import type { Netns } from './netns.js';

/** Where `make` puts the kernel program. */
export const DEFAULT_OBJECT_PATH = fileURLToPath(new URL('../bpf/.output/tcpdwell.bpf.o', import.meta.url));

export interface TracerOptions {
  objectPath?: string;
  /** emit only sockets in these network namespaces (inodes); empty = all */
  netns?: readonly number[];
  /** emit only sockets with one of these ports at either end; empty = all */
  ports?: readonly number[];
  /** emit only this address family */
  family?: 'inet' | 'inet6' | null;
  /** ring buffer size in bytes: a power of two, at least one page (default 4 MiB) */
  ringBytes?: number;
  /** the kernel wakes the reader once this many bytes wait (default 256 KiB); 0 = every record */
  wakeupBytes?: number;
  /**
   * Keep the per-socket state (entry times, owners: maps sk_state and tw_state) pinned in this
   * bpffs directory, so a restarted agent re-attaches to it and dwell times of sockets that
   * lived across the restart stay exact. Removed by `tcpdwell uninstall`.
   */
  pinDir?: string;
  /** told when pinned state had to be discarded */
  log?: (line: string) => void;
}

/** A BpfError as one clear EnvironmentError line (EPERM's message already names the capabilities). */
function environmentError(err: unknown, doing: string): unknown {
  if (!(err instanceof BpfError)) return err;
  const message = err.code === 'EPERM' ? err.message : `${doing} the kernel program failed: ${err.message}`;
  return new EnvironmentError(message, { cause: err });
}

/** The maps that hold per-socket state worth keeping across agent restarts. */
export const PINNED_MAPS = ['sk_state', 'tw_state'] as const;
const BPF_FS_MAGIC = 0xcafe4a11;

/** Makes sure dir is on a bpffs (mounting /sys/fs/bpf if it is not), and creates it. */
function preparePinDir(dir: string): void {
  const isBpffs = (p: string) => {
    try {
      return statfsSync(p).type === BPF_FS_MAGIC;
    } catch {
      return false;
    }
  };
  if (!isBpffs('/sys/fs/bpf') && dir.startsWith('/sys/fs/bpf')) {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'ignore' });
    } catch {
      throw new EnvironmentError('bpffs is not mounted at /sys/fs/bpf and mounting it failed: run mount -t bpf bpf /sys/fs/bpf');
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isBpffs(dir)) throw new EnvironmentError(`--pin-dir ${dir} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf, and use a directory below it)`);
}

/** Removes the pinned state (`tcpdwell uninstall`). Returns what it removed. */
export function removePinned(dir: string): string[] {
  const removed: string[] = [];
  for (const name of PINNED_MAPS) {
    const p = `${dir}/${name}`;
    if (existsSync(p)) {
      rmSync(p);
      removed.push(p);
    }
  }
  try {
    rmdirSync(dir); // only if empty: something else may be pinned there
  } catch {
    // not empty, or absent
  }
  return removed;
}

/**
 * The kernel program's counters, summed over CPUs (struct tcpdwell_counters), plus what the
 * kernel itself skipped: runs of our programs that would have nested in a running one on the
 * same CPU (bpf_prog_info.recursion_misses) — events the program never saw.
 */
export type KernelCounters = Record<keyof typeof COUNTERS_FIELDS, number> & {
  /** skipped runs of the transition program: transitions lost (in any namespace) */
  skipped_transitions: number;
  /** skipped runs of the timer programs: each may have been a timewait start or end */
  skipped_timer: number;
};

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;
const AF_INET = 2;
const AF_INET6 = 10;
export const DEFAULT_WAKEUP_BYTES = 256 << 10;

/** Effective capabilities of this process, from /proc/self/status. */
function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const hasCap = (caps: bigint, cap: number) => (caps & (1n << BigInt(cap))) !== 0n;

/**
 * Checks what loading needs before trying, so the user gets one clear line instead of a
 * verifier dump: BTF (CO-RE, tp_btf), CAP_BPF + CAP_PERFMON (tracing programs, reading
 * kernel memory) or CAP_SYS_ADMIN.
 */
export function checkEnvironment(): void {
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new EnvironmentError(
      'this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): tcpdwell needs a kernel built with CONFIG_DEBUG_INFO_BTF=y',
    );
  }
  const caps = effectiveCaps();
  // Measured (src/privileges.ts): CAP_NET_ADMIN is not needed; CAP_SYS_ADMIN only to enter
  // other network namespaces for snapshots.
  const bpfOk = hasCap(caps, CAP_SYS_ADMIN) || (hasCap(caps, CAP_BPF) && hasCap(caps, CAP_PERFMON));
  if (!bpfOk) {
    throw new EnvironmentError(
      'tcpdwell needs root, or the capabilities CAP_BPF and CAP_PERFMON (+ CAP_SYSLOG where kallsyms is restricted, + CAP_SYS_ADMIN to snapshot other network namespaces) ' +
        '(e.g. sudo ./bin/tcpdwell trace, or setcap cap_bpf,cap_perfmon,cap_syslog,cap_sys_admin+ep on node)',
    );
  }
  if (kallsymsHidden()) {
    // libbpf resolves the tw_timer_handler __ksym from /proc/kallsyms; zeroed addresses load
    // fine and then silently match no timer: every TIME_WAIT start and end would be lost.
    throw new EnvironmentError(
      '/proc/kallsyms hides kernel addresses from this process (kernel.kptr_restrict, kernel.perf_event_paranoid > 1): ' +
        'tcpdwell needs CAP_SYSLOG to resolve tw_timer_handler, or TIME_WAIT could not be traced',
    );
  }
}

/** True when /proc/kallsyms shows this process only zeroed addresses (no CAP_SYSLOG where it is needed). */
function kallsymsHidden(): boolean {
  let head: string;
  try {
    const fd = openSync('/proc/kallsyms', 'r');
    try {
      const buf = Buffer.alloc(4096);
      head = buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, null));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // no kallsyms at all: libbpf will say so at load
  }
  const addrs = [...head.matchAll(/^([0-9a-f]+) /gm)].map((m) => m[1]!);
  return addrs.length > 0 && addrs.every((a) => /^0+$/.test(a));
}

function encodeConfig(opts: TracerOptions): Buffer {
  const buf = Buffer.alloc(CONFIG_SIZE);
  buf.writeUInt32LE(opts.wakeupBytes ?? DEFAULT_WAKEUP_BYTES, CONFIG_FIELDS.wakeup_bytes.offset);
  const family = opts.family === 'inet' ? AF_INET : opts.family === 'inet6' ? AF_INET6 : 0;
  buf.writeUInt16LE(family, CONFIG_FIELDS.family.offset);
  buf.writeUInt8(opts.netns?.length ? 1 : 0, CONFIG_FIELDS.filter_netns.offset);
  buf.writeUInt8(opts.ports?.length ? 1 : 0, CONFIG_FIELDS.filter_ports.offset);
  return buf;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

/** Writes the filter maps and the config entry (filters first, so no moment filters too much). */
function writeFilters(obj: BpfObject, opts: TracerOptions): void {
  const one = Buffer.from([1]);
  const sync = (name: string, keys: Buffer[]) => {
    const map = obj.map(name);
    const want = new Set(keys.map((k) => k.toString('hex')));
    for (const k of map.keys()) if (!want.has(k.toString('hex'))) map.delete(k);
    for (const k of keys) map.update(k, one);
  };
  sync('netns_filter', (opts.netns ?? []).map(u32));
  sync('port_filter', (opts.ports ?? []).map(u16));
  obj.map('dwell_config').update(u32(0), encodeConfig(opts));
}

/**
 * The pinned maps libbpf refused to reuse because their type, key or value size, size or flags
 * differ from this program's (libbpf: "couldn't reuse pinned map at 'PATH': parameter
 * mismatch", then EINVAL from the load); null when err is any other failure. libbpf compares
 * only those parameters, not the BTF: a layout change that keeps every size would go unnoticed,
 * so a change to struct sk_info or tw_info must change its size (or the map's name).
 */
export function pinnedMisfits(err: unknown): string[] | null {
  if (!(err instanceof BpfError) || err.code !== 'EINVAL') return null;
  const text = `${err.message}\n${(err as { verifierLog?: string }).verifierLog ?? ''}`;
  const paths = [...text.matchAll(/couldn't reuse pinned map at '([^']+)': parameter mismatch/g)].map((m) => m[1]!);
  return paths.length > 0 ? [...new Set(paths)] : null;
}

/** The loaded and attached kernel program. Close it to detach. */
export class Tracer {
  private readers: RingBufferReader[] = [];
  private closed = false;

  private constructor(private readonly obj: BpfObject) {}

  /** Opens, configures, loads and attaches the kernel program. */
  static open(opts: TracerOptions = {}): Tracer {
    checkEnvironment();
    const path = opts.objectPath ?? DEFAULT_OBJECT_PATH;
    if (!existsSync(path)) throw new EnvironmentError(`the kernel program ${path} is missing: run make`);
    const ring = opts.ringBytes;
    if (ring !== undefined && (ring < 4096 || (ring & (ring - 1)) !== 0)) {
      throw new UsageError(`ring size ${ring}: must be a power of two of at least 4096 bytes`);
    }
    if (opts.pinDir) preparePinDir(opts.pinDir);
    const openAndLoad = (): BpfObject => {
      const o = BpfObject.open(path);
      try {
        if (ring !== undefined) o.setMaxEntries('events', ring);
        if (opts.pinDir) for (const m of PINNED_MAPS) o.setPinPath(m, `${opts.pinDir}/${m}`);
        o.load();
        return o;
      } catch (err) {
        o.close();
        throw err;
      }
    };
    let obj: BpfObject;
    try {
      try {
        obj = openAndLoad();
      } catch (err) {
        // Pinned maps from a version whose layout differs cannot be reused: drop them (their
        // sockets' dwells become lower bounds) rather than refuse to start. Any other failure
        // (even one that names the pin path) keeps the pinned state and is reported.
        const misfits = opts.pinDir ? pinnedMisfits(err) : null;
        if (!misfits || !opts.pinDir) throw err;
        opts.log?.(
          `pinned state in ${opts.pinDir} does not fit this version (${misfits.join(', ')}): discarded (dwells of existing sockets are lower bounds)`,
        );
        removePinned(opts.pinDir);
        obj = openAndLoad();
      }
    } catch (err) {
      throw environmentError(err, 'loading');
    }
    try {
      writeFilters(obj, opts);
      obj.attachAll();
    } catch (err) {
      obj.close();
      throw environmentError(err, 'attaching');
    }
    return new Tracer(obj);
  }

  /**
   * Reads the ring buffer: onBatch gets one Buffer per batch (bpf-ts-loader's format).
   * The reader polls every pollIntervalMs, since the kernel side wakes it only for big batches.
   */
  readRing(onBatch: (batch: Buffer) => void, pollIntervalMs = 10, maxBatchBytes?: number): RingBufferReader {
    const reader = this.obj.openRingBuffer('events', onBatch, { pollIntervalMs, maxBatchBytes });
    this.readers.push(reader);
    return reader;
  }

  /**
   * The sockets that exist now in the given network namespace (iter/tcp walks one namespace:
   * the one it is created in). Returns the iterator's raw records.
   */
  snapshot(netns?: Netns): Buffer {
    return this.obj.runIterator('dump_tcp', netns?.path ? { netnsPath: netns.path } : undefined);
  }

  /** Reads everything the kernel has written so far into the readers' callbacks. */
  drainRing(): void {
    for (const r of this.readers) r.consume();
  }

  /** Changes the filters while tracing (the control service's `config`). */
  setFilters(opts: Pick<TracerOptions, 'netns' | 'ports' | 'family' | 'wakeupBytes'>): void {
    writeFilters(this.obj, opts);
  }

  /** The kernel counters, summed over all CPUs. */
  counters(): KernelCounters {
    const slots = this.obj.map('counters').lookupPerCpu(u32(0)) ?? [];
    const out = { skipped_transitions: 0, skipped_timer: 0 } as KernelCounters;
    for (const p of this.obj.programStats()) {
      if (p.name === 'handle_set_state') out.skipped_transitions += p.recursionMisses;
      else if (p.name.startsWith('handle_timer')) out.skipped_timer += p.recursionMisses;
    }
    for (const [name, f] of Object.entries(COUNTERS_FIELDS) as [keyof typeof COUNTERS_FIELDS, { offset: number }][]) {
      out[name] = slots.reduce((sum, b) => sum + Number(b.readBigUInt64LE(f.offset)), 0);
    }
    return out;
  }

  /** Stops readers, detaches and closes. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) r.close();
    this.obj.close();
  }
}
