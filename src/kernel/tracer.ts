/**
 * The kernel side, wired: opens bpf/tcpdwell.bpf.o through bpf-ts-loader, configures its
 * filters, loads and attaches it, and hands out raw batches. Bytes only — decoding lives in
 * src/decode/. Preflight checks are in preflight.ts, pinned state in pins.ts.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, statfsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BpfObject, BpfError, releaseBatch, type RingBufferReader } from 'bpf-ts-loader';
import { COUNTERS_FIELDS, CONFIG_FIELDS, CONFIG_SIZE, MapName, ProgramName } from './abi.js';
import { EnvironmentError, UsageError } from '../common/errors.js';
import { AF_INET, AF_INET6, type KernelFilters } from './filters.js';
import { ownNetnsInode, type Netns } from './namespaces.js';
import { checkEnvironment } from './preflight.js';
import { PINNED_MAPS, preparePinDir, removePinned } from './pins.js';

/** Where `make` puts the kernel program. */
export const DEFAULT_OBJECT_PATH = fileURLToPath(new URL('../../bpf/.output/tcpdwell.bpf.o', import.meta.url));

export interface TracerOptions extends KernelFilters {
  objectPath?: string;
  /** ring buffer size in bytes: a power of two, at least one page (default 16 MiB: bpf/tcpdwell.bpf.c `events`) */
  ringBytes?: number;
  /** the kernel wakes the reader once this many bytes wait (default 256 KiB); 0 = every record */
  wakeupBytes?: number;
  /**
   * Keep the per-socket state (entry times, owners: maps sk_state and tw_state) pinned in this
   * bpffs directory, so a restarted agent re-attaches to it and dwell times of sockets that
   * lived across the restart stay exact. Removed by `tcpdwell uninstall`.
   */
  pinDir?: string;
  /**
   * Read another tracer's per-socket state from this bpffs directory — the running agent's
   * --pin-dir — so that a snapshot gives sockets older than this tracer their real entry time
   * and owner (`top`, `trace`, `states` beside `run`). Read only, and only what is pinned there.
   */
  peerPinDir?: string;
  /** told when pinned state had to be discarded or could not be read */
  log?: (line: string) => void;
}

/** A BpfError as one clear EnvironmentError line (EPERM's message already names the capabilities). */
function environmentError(err: unknown, doing: string): unknown {
  if (!(err instanceof BpfError)) return err;
  const message = err.code === 'EPERM' ? err.message : `${doing} the kernel program failed: ${err.message}`;
  return new EnvironmentError(message, { cause: err });
}

/**
 * The kernel program's counters, summed over CPUs (struct tcpdwell_counters), plus what the
 * kernel itself skipped: runs of our programs that would have nested in a running one on the
 * same CPU (bpf_prog_info.recursion_misses) — events the program never saw.
 */
export type KernelCounters = Record<keyof typeof COUNTERS_FIELDS, number> & {
  /** skipped runs of the programs that emit events of their own (transitions, resets, accept()): those events lost (in any namespace) */
  skipped_transitions: number;
  /** skipped runs of the timer programs: each may have been a timewait start or end */
  skipped_timer: number;
};

export const DEFAULT_WAKEUP_BYTES = 256 << 10;

/** Attached only when tracefs lets us (classic tracepoints: libbpf reads their ids there). */
const ACCEPT_PROGRAMS = [ProgramName.handle_accept4, ProgramName.handle_accept] as const;
const TRACEFS = '/sys/kernel/tracing';
const TRACEFS_MAGIC = 0x74726163;

/**
 * Whether the accept() tracepoints can be attached: their ids readable in tracefs (mounted here
 * when it is not, which needs root or CAP_SYS_ADMIN). A non-root agent usually cannot read the
 * root-only tracefs; it then learns who accepted a socket at the socket's next transition in
 * process context or at the next walk of the host's socket files. Returns why not, or null.
 */
function acceptTracepointsUnavailable(): string | null {
  const id = `${TRACEFS}/events/syscalls/sys_exit_accept4/id`;
  let mounted = false;
  try {
    mounted = statfsSync(TRACEFS).type === TRACEFS_MAGIC;
  } catch {
    // no such directory
  }
  if (!mounted) {
    try {
      execFileSync('mount', ['-t', 'tracefs', 'tracefs', TRACEFS], { stdio: 'ignore' });
    } catch {
      return `tracefs is not mounted at ${TRACEFS} and mounting it failed`;
    }
  }
  try {
    accessSync(id, constants.R_OK);
    return null;
  } catch (err) {
    return `${id}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`;
  }
}

/** The read-only stand-in of each pinned map, for another tracer's pins (bpf/tcpdwell.bpf.c). */
const PEER_MAPS: Record<(typeof PINNED_MAPS)[number], string> = { [MapName.sk_state]: MapName.peer_sk_state, [MapName.tw_state]: MapName.peer_tw_state };

const TIMER_PROGRAMS = new Set<string>([ProgramName.handle_timer_start, ProgramName.handle_timer_cancel, ProgramName.handle_timer_expire]);
/** Each run of these emits its own event: a skipped run is one lost. */
const EVENT_PROGRAMS = new Set<string>([
  ProgramName.handle_set_state,
  ProgramName.handle_send_reset,
  ProgramName.handle_receive_reset,
  ProgramName.handle_accept4,
  ProgramName.handle_accept,
]);

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
  sync(MapName.netns_filter, (opts.netns ?? []).map(u32));
  sync(MapName.port_filter, (opts.ports ?? []).map(u16));
  obj.map(MapName.dwell_config).update(u32(0), encodeConfig(opts));
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
    const acceptWhy = acceptTracepointsUnavailable();
    if (acceptWhy) opts.log?.(`accept() is not traced (${acceptWhy}): an accepted socket shows its listener's owner until it next changes state in its process, or until the next walk of the socket files`);
    let peerPins = opts.peerPinDir ? PINNED_MAPS.filter((m) => existsSync(`${opts.peerPinDir}/${m}`)) : [];
    const openAndLoad = (): BpfObject => {
      const o = BpfObject.open(path);
      try {
        if (ring !== undefined) o.setMaxEntries(MapName.events, ring);
        const programs = new Set(o.programs().map((p) => p.name));
        for (const p of ACCEPT_PROGRAMS) if (programs.has(p)) o.setAutoload(p, acceptWhy === null);
        if (opts.pinDir) for (const m of PINNED_MAPS) o.setPinPath(m, `${opts.pinDir}/${m}`);
        for (const m of peerPins) {
          const peer = PEER_MAPS[m];
          // peer_tw_state has one entry unless it stands for a pinned tw_state, which it must match.
          if (peer === MapName.peer_tw_state) o.setMaxEntries(peer, o.maps().find((x) => x.name === m)!.maxEntries);
          o.setPinPath(peer, `${opts.peerPinDir}/${m}`);
        }
        o.load();
        return o;
      } catch (err) {
        o.close();
        throw err;
      }
    };
    let obj: BpfObject | undefined;
    try {
      for (let attempt = 0; !obj; attempt++) {
        try {
          obj = openAndLoad();
        } catch (err) {
          // Pinned maps from a version whose layout differs cannot be reused. Our own are
          // dropped (their sockets' dwells become lower bounds) rather than refuse to start;
          // another tracer's are only not read. Any other failure (even one that names a pin
          // path) keeps the pinned state and is reported.
          const misfits = attempt < 2 ? pinnedMisfits(err) : null;
          const peerMisfits = misfits?.filter((p) => opts.peerPinDir && p.startsWith(`${opts.peerPinDir}/`)) ?? [];
          const ownMisfits = misfits?.filter((p) => opts.pinDir && p.startsWith(`${opts.pinDir}/`)) ?? [];
          if (peerMisfits.length > 0) {
            opts.log?.(`the agent's pinned state in ${opts.peerPinDir} does not fit this version (${peerMisfits.join(', ')}): not read (ages of sockets older than this command are lower bounds)`);
            peerPins = [];
          }
          if (ownMisfits.length > 0) {
            opts.log?.(
              `pinned state in ${opts.pinDir} does not fit this version (${ownMisfits.join(', ')}): discarded (dwells of existing sockets are lower bounds)`,
            );
            removePinned(opts.pinDir!);
          }
          if (peerMisfits.length + ownMisfits.length === 0) throw err;
        }
      }
    } catch (err) {
      throw environmentError(err, 'loading');
    }
    const loaded = obj;
    try {
      writeFilters(loaded, opts);
      loaded.attachAll();
    } catch (err) {
      loaded.close();
      throw environmentError(err, 'attaching');
    }
    return new Tracer(loaded);
  }

  /**
   * Reads the ring buffer: onBatch gets one Buffer per batch (bpf-ts-loader's format).
   * The reader polls every pollIntervalMs, since the kernel side wakes it only for big batches.
   * With `release`, a batch is freed (and its Buffer emptied) as soon as onBatch returns.
   */
  readRing(onBatch: (batch: Buffer) => void, pollIntervalMs = 10, maxBatchBytes?: number, opts: { release?: boolean } = {}): RingBufferReader {
    // release: the caller keeps nothing of a batch past onBatch, so its memory is freed at once
    // (bpf-ts-loader releaseBatch) rather than at the next garbage collection.
    const deliver = opts.release
      ? (batch: Buffer) => {
          try {
            onBatch(batch);
          } finally {
            releaseBatch(batch);
          }
        }
      : onBatch;
    const reader = this.obj.openRingBuffer(MapName.events, deliver, { pollIntervalMs, maxBatchBytes });
    this.readers.push(reader);
    return reader;
  }

  /**
   * The sockets that exist now in the given network namespace (iter/tcp walks one namespace:
   * the one it is created in). Returns the iterator's raw records.
   */
  snapshot(netns?: Netns): Buffer {
    return this.obj.runIterator(ProgramName.dump_tcp, netns?.path ? { netnsPath: netns.path } : undefined);
  }

  /**
   * The one walk over network namespaces, after a walk of every process's socket files (which
   * makes each socket's holder its owner, host-wide; its records are returned as `files`): each is snapshotted (iter/tcp walks the namespace it
   * is created in; this process's own needs no setns, so no CAP_SYS_ADMIN), then — with
   * `drainFirst` — the ring is drained into the readers, since what it holds is older than the
   * snapshot and must be applied first, and then the records are handed over. Namespaces with
   * no path that opens them, and with `ownOnly` every other namespace, are returned unwalked.
   */
  snapshotNamespaces(
    namespaces: readonly Netns[],
    onSnapshot: (ns: Netns, records: Buffer) => void,
    opts: { drainFirst?: boolean; ownOnly?: boolean } = {},
  ): { noPath: Netns[]; unreachable: Netns[]; files: Buffer } {
    // Who holds each socket first (host-wide, no setns): the walk writes the owners the
    // snapshots then carry, for sockets older than us and those that changed hands.
    const files = this.socketFiles({ listenersOnly: false });
    const own = ownNetnsInode();
    const noPath: Netns[] = [];
    const unreachable: Netns[] = [];
    for (const ns of namespaces) {
      const mine = ns.inode === own;
      if (!mine && opts.ownOnly) unreachable.push(ns);
      else if (!mine && !ns.path) noPath.push(ns);
      else {
        const records = this.snapshot(mine ? { inode: ns.inode, path: '' } : ns);
        if (opts.drainFirst) this.drainRing();
        onSnapshot(ns, records);
      }
    }
    return { noPath, unreachable, files };
  }

  /**
   * The TCP socket files every process holds, host-wide (iter/task_file walks tasks, not a
   * namespace: no setns, no capability once loaded), as struct tcpdwell_sockfile records:
   * listening sockets only, with their queues (SYN pressure), or every socket with its holder.
   */
  socketFiles(opts: { listenersOnly: boolean }): Buffer {
    if (opts.listenersOnly) return this.obj.runIterator(ProgramName.dump_listeners);
    // A new walk: its first holder of each socket becomes the owner (bpf/tcpdwell.bpf.c walk_state).
    this.walkGen = (this.walkGen % 255) + 1;
    this.obj.map(MapName.walk_state).update(u32(0), u32(this.walkGen));
    return this.obj.runIterator(ProgramName.dump_files);
  }
  private walkGen = 0;

  /** Reads everything the kernel has written so far into the readers' callbacks. */
  drainRing(): void {
    for (const r of this.readers) r.consume();
  }

  /** Changes the filters while tracing (the control service's `config`). */
  setFilters(opts: KernelFilters & Pick<TracerOptions, 'wakeupBytes'>): void {
    writeFilters(this.obj, opts);
  }

  /** The kernel counters, summed over all CPUs. */
  counters(): KernelCounters {
    const slots = this.obj.map(MapName.counters).lookupPerCpu(u32(0)) ?? [];
    const out = { skipped_transitions: 0, skipped_timer: 0 } as KernelCounters;
    for (const p of this.obj.programStats()) {
      if (EVENT_PROGRAMS.has(p.name)) out.skipped_transitions += p.recursionMisses;
      else if (TIMER_PROGRAMS.has(p.name)) out.skipped_timer += p.recursionMisses;
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
