/// <reference types="node" />
/**
 * bpf-ts-loader: a small, typed Node-API binding over the system libbpf.
 *
 * Errors: every libbpf/kernel failure is a {@link BpfError} (load failures a
 * {@link BpfLoadError}) whose `cause` is the raw native error and whose message
 * carries the errno code, libbpf's last words and what to do. Invalid
 * arguments throw `TypeError`s whose message starts with `Usage: `.
 */

export class BpfError extends Error {
  /** Positive errno, or a libbpf code (4000..4013, see LIBBPF_ERRNO__*). */
  readonly errno?: number;
  /** 'ENOENT', 'EPERM', 'LIBBPF_ERRNO__FORMAT', or 'ERR_BPF_CLOSED' / 'ERR_BPF_NOT_LOADED' / 'ERR_BPF_REENTRANT' for state errors. */
  readonly code?: string;
}

export class BpfLoadError extends BpfError {
  /** Everything libbpf printed during load() at info/warning level, including the kernel verifier log. */
  readonly verifierLog: string;
}

export interface ProgramInfo {
  name: string;
  /** ELF section, e.g. "tp_btf/sys_enter", "iter/task" (a leading "?" is stripped by libbpf). */
  section: string;
  autoload: boolean;
}

export interface ProgramStats {
  name: string;
  runCount: number;
  runTimeNs: number;
  recursionMisses: number;
}
export interface MapInfo {
  name: string;
  /** enum bpf_map_type */
  type: number;
  /** libbpf's name for the type: "hash", "percpu_array", "ringbuf", ... */
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface ConstantInfo {
  name: string;
  /** ".rodata", ".data", ".bss" (or ".rodata.*" / ".data.*") */
  section: string;
  offset: number;
  size: number;
}

export interface RingBufferOptions {
  /** User-space poll interval in ms (needed when the BPF side uses BPF_RB_NO_WAKEUP); default 10; 0 = only epoll wake-ups. */
  pollIntervalMs?: number;
  /** A batch is handed over when it reaches this many bytes (several batches per wake-up if needed); default 1 MiB, minimum 64. */
  maxBatchBytes?: number;
}

export interface RingBufferStats {
  /** Records copied out of the ring. */
  records: number;
  /** Bytes of record payload (headers and padding excluded). */
  bytes: number;
  /** Batches handed to onBatch. */
  batches: number;
  /** Records whose entry (8-byte header + padded payload) exceeded maxBatchBytes; each went out alone in its own batch. */
  oversizedRecords: number;
  /** Records with a zero-length payload. */
  emptyRecords: number;
}

/**
 * Batch wire format, as passed to onBatch: a concatenation of entries, each
 *
 *     u32 little-endian payload length | u32 zero | payload | zero padding to a multiple of 8
 *
 * so every payload starts 8-byte aligned relative to the batch start. Use
 * {@link forEachRecord} or {@link records} instead of parsing by hand.
 */
export const RECORD_HEADER_BYTES: 8;

/**
 * Calls fn(offset, length, batch) for each record of a batch, where
 * `batch.subarray(offset, offset + length)` is the payload. Returns the number
 * of records. Throws RangeError on a malformed batch.
 */
export function forEachRecord(batch: Buffer, fn: (offset: number, length: number, batch: Buffer) => void): number;

/**
 * Frees a batch's memory now instead of when the garbage collector finds its Buffer: the Buffer is
 * detached (length 0 from then on, and so is every view of it). For a caller that keeps nothing
 * of a batch after onBatch returns; without it, batches wait for a collection, which a caller
 * that allocates little triggers rarely. Releasing twice is a no-op; a Buffer that is not a
 * batch throws `TypeError` (`Usage: ...`).
 */
export function releaseBatch(batch: Buffer): void;

/** The payloads of a batch as zero-copy Buffer views. */
export function records(batch: Buffer): IterableIterator<Buffer>;

export class BpfObject {
  private constructor();
  /** bpf_object__open_file(); throws BpfError (code ENOENT, LIBBPF_ERRNO__FORMAT, ...). */
  static open(path: string): BpfObject;
  readonly path: string;
  programs(): ProgramInfo[];
  /**
   * Kernel statistics of each loaded program (bpf_prog_info). `recursionMisses`: invocations the
   * kernel skipped because the same program was already running on that CPU (an interrupt's
   * softirq hit it mid-run) — events the program never saw. `runCount`/`runTimeNs` are kept only
   * while sysctl kernel.bpf_stats_enabled=1 (else 0).
   */
  programStats(): ProgramStats[];
  /** All maps, internal ones (".rodata", ".bss", ".data", named "<obj>.rodata" etc.) included. */
  maps(): MapInfo[];
  /** Global variables of .rodata/.data/.bss, from the object's BTF DATASECs. */
  constants(): ConstantInfo[];
  /**
   * Before load(): write global variables by name. number | bigint | boolean are
   * encoded little-endian to the variable's size (1, 2, 4 or 8 bytes; signed or
   * unsigned range); a Buffer must match the size exactly. Unknown name, wrong
   * size or out-of-range value → TypeError (listing the known constants); all
   * entries are validated before any is written.
   */
  setConstants(values: Record<string, number | bigint | boolean | Buffer>): void;
  /** Before load(). */
  setMaxEntries(map: string, maxEntries: number): void;
  /** Before load(). Sections prefixed with "?" (e.g. SEC("?tp_btf/...")) start with autoload off. */
  setAutoload(program: string, autoload: boolean): void;
  /** Before load(): libbpf pins the map there on load, or reuses a compatible map already pinned there. The parent directory must exist on a bpffs. close() does not unpin. */
  setPinPath(map: string, path: string | null): void;
  /** Throws BpfLoadError. Can be attempted once per object (libbpf's rule): on failure, open the file again. */
  load(): void;
  /** bpf_program__attach(); the link lives until close(). Throws BpfError with errno. */
  attach(program: string): void;
  /** Attaches every loaded, not yet attached program except iterators (section "iter/..."), which run via runIterator(). */
  attachAll(): void;
  /** A handle on a map; its fields are a snapshot taken at this call. Throws TypeError listing known maps. */
  map(name: string): BpfMap;
  /**
   * Attach an iterator program, bpf_iter_create(), read() until EOF, destroy the link; returns all bytes it wrote.
   * Iterators over sockets (iter/tcp, iter/udp, ...) walk one network namespace: the one the iterator is
   * created in. `netnsPath` (e.g. /run/netns/NAME or /proc/PID/ns/net) creates it in that namespace.
   */
  runIterator(program: string, options?: { netnsPath?: string }): Buffer;
  /**
   * Opens a reader on a BPF_MAP_TYPE_RINGBUF map (after load()). onBatch receives
   * ONE Buffer per batch of records (see {@link RECORD_HEADER_BYTES} for the format),
   * never one call per record. The Buffer owns its memory (it is not reused); free it at once
   * with {@link releaseBatch} when nothing of it is kept.
   *
   * If onBatch throws while called from the event loop, the error is raised as a
   * process 'uncaughtException' (like a throwing 'data' listener) and the reader
   * keeps running; if it throws inside consume(), consume() rethrows it and the
   * undelivered batches are handed over by the next consume()/wake-up.
   *
   * An open reader keeps itself, its callback and this BpfObject alive without a
   * JS reference, and keeps the process alive unless unref()'d.
   */
  openRingBuffer(map: string, onBatch: (batch: Buffer) => void, options?: RingBufferOptions): RingBufferReader;
  /** Closes readers, destroys links, bpf_object__close(). Idempotent. Other methods then throw BpfError ERR_BPF_CLOSED. Also happens if the object is garbage-collected or the environment exits. */
  close(): void;
}

export class BpfMap {
  private constructor();
  readonly name: string;
  readonly type: number;
  readonly typeName: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** PERCPU_ARRAY / PERCPU_HASH / LRU_PERCPU_HASH */
  readonly perCpu: boolean;
  /** libbpf_num_possible_cpus() */
  readonly possibleCpus: number;
  /** Raw value, or undefined if absent. For per-CPU maps: roundup(valueSize, 8) * possibleCpus bytes, one slot per CPU. */
  lookup(key: Buffer): Buffer | undefined;
  /** Per-CPU maps only: one Buffer (valueSize bytes, a view into one lookup) per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined;
  /** value: valueSize bytes (per-CPU maps: roundup(valueSize, 8) * possibleCpus). */
  update(key: Buffer, value: Buffer, flags?: 'any' | 'noexist' | 'exist'): void;
  /** false if the key was absent. */
  delete(key: Buffer): boolean;
  /** All keys via bpf_map_get_next_key (at most maxEntries). */
  keys(): Buffer[];
}

export class RingBufferReader {
  private constructor();
  /** Live counters (a fresh snapshot object per read). */
  readonly stats: RingBufferStats;
  /** Synchronously drain everything currently in the ring, delivering batches through onBatch before returning; returns the number of records drained. Throws BpfError ERR_BPF_REENTRANT if called from inside onBatch. 0 after close(). */
  consume(): number;
  /** Like net.Socket: an unref'd reader does not keep the process alive. */
  ref(): this;
  unref(): this;
  /** Stops polling, frees the ring_buffer and uv handles; undelivered batches are dropped. Idempotent. */
  close(): void;
}

/** CLOCK_BOOTTIME now, in ns: the clock of bpf_ktime_get_boot_ns(), to turn event times into wall-clock time. */
export function clockBoottimeNs(): bigint;

/** Linux capability names, indexed by capability number ("CAP_CHOWN" = 0 ... "CAP_CHECKPOINT_RESTORE" = 40). */
export const CAPABILITY_NAMES: readonly string[];

/** A capability by name: "CAP_BPF", or case-insensitively without the prefix ("bpf"). */
export type CapabilityName = string;

export interface CapabilitySets {
  effective: string[];
  permitted: string[];
  inheritable: string[];
  bounding: string[];
  ambient: string[];
}

/** The capability sets of the calling thread, or of process/thread `pid` (from /proc/PID/status). */
export function capabilities(pid?: number): CapabilitySets;

export interface DropCapabilitiesResult {
  /** the canonical names dropped */
  dropped: string[];
  /** threads (this one included) that dropped them */
  threads: number;
  /**
   * Ids of threads that could not be reached because they block every signal (in Node, the
   * inspector's SIGUSR1 thread, which runs no JavaScript): they keep their capabilities.
   */
  unreached: number[];
  /** whether the bounding set was changed too (needs CAP_SETPCAP) */
  bounding: boolean;
}

/**
 * Drops capabilities, irreversibly, from the effective, permitted, inheritable and ambient sets
 * — and the bounding set, when `bounding` (default true) and CAP_SETPCAP is held — of every
 * thread of the process (capabilities are per thread: capset() on each, through a real-time
 * signal). Unknown names → TypeError "Usage: ..."; a failing capset() → BpfError with errno.
 */
/**
 * Sends one sd_notify(3) state — "READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..." — as a
 * datagram to the service manager's AF_UNIX socket (`socketPath`, default $NOTIFY_SOCKET; a path
 * or "@abstract"). Returns false when there is no socket (not run by systemd with Type=notify);
 * throws an Error with `errno` and `code` when sending fails.
 */
export function notifyServiceManager(state: string, socketPath?: string): boolean;

export function dropCapabilities(names: readonly CapabilityName[], options?: { bounding?: boolean }): DropCapabilitiesResult;
