/**
 * The kernel side, wired: opens bpf/tcpdwell.bpf.o through bpf-ts-loader, configures its
 * filters, loads and attaches it, and hands out raw batches. Bytes only — decoding lives in
 * decode.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
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

const CAP_NET_ADMIN = 12;
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
 * kernel memory) or CAP_SYS_ADMIN, and CAP_NET_ADMIN (socket storage, the tcp iterator).
 */
export function checkEnvironment(): void {
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new EnvironmentError(
      'this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): tcpdwell needs a kernel built with CONFIG_DEBUG_INFO_BTF=y',
    );
  }
  const caps = effectiveCaps();
  const bpfOk = hasCap(caps, CAP_SYS_ADMIN) || (hasCap(caps, CAP_BPF) && hasCap(caps, CAP_PERFMON));
  if (!bpfOk || !hasCap(caps, CAP_NET_ADMIN)) {
    throw new EnvironmentError(
      'tcpdwell needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN ' +
        '(e.g. sudo ./bin/tcpdwell trace, or setcap cap_bpf,cap_perfmon,cap_net_admin+ep on node)',
    );
  }
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
    const obj = BpfObject.open(path);
    try {
      if (ring !== undefined) obj.setMaxEntries('events', ring);
      obj.load();
      writeFilters(obj, opts);
      obj.attachAll();
    } catch (err) {
      obj.close();
      if (err instanceof BpfError && err.code === 'EPERM') {
        throw new EnvironmentError(`${err.message}`, { cause: err });
      }
      if (err instanceof BpfError) {
        throw new EnvironmentError(`loading the kernel program failed: ${err.message}`, { cause: err });
      }
      throw err;
    }
    return new Tracer(obj);
  }

  /**
   * Reads the ring buffer: onBatch gets one Buffer per batch (bpf-ts-loader's format).
   * The reader polls every pollIntervalMs, since the kernel side wakes it only for big batches.
   */
  readRing(onBatch: (batch: Buffer) => void, pollIntervalMs = 10): RingBufferReader {
    const reader = this.obj.openRingBuffer('events', onBatch, { pollIntervalMs });
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
