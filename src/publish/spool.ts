/**
 * Store-and-forward spool: every message is written here before it is published and forgotten
 * once JetStream has acknowledged it, so neither a broker outage nor an agent crash (SIGKILL)
 * loses what was already captured. Bounded: when full, the oldest messages are dropped and
 * counted — never silently.
 *
 * Append-only segment files, named so that name order is publish order:
 *   <epoch:10>-<first seq:16>.seg = entries of [u32 magic][u32 crc32 of the rest][u32 n][rest: n bytes]
 *     rest of a message: [u8 1][u64 seq][u16 n][subject][u16 n][msgId][u32 events][payload]
 *     rest of a done:    [u8 2][u64 seq]   (acknowledged, or dropped by the bound)
 * One write per message (the agent spools one message per batch) and one per done; a segment
 * whose messages are all done is deleted. A crash can leave a torn last entry: on resume it
 * fails its length or checksum, is counted (corrupt) and the rest of that file is skipped.
 *
 * Durability (README "The spool"): a message is in the kernel's page cache before it is
 * published, so an agent crash loses nothing; there is no fsync per message, so a power loss or
 * kernel crash can lose what had not been written back of the open segment. A segment is
 * fsynced when it is closed: in the background when it reaches segmentBytes, and at once when
 * the agent stops (close()).
 *
 * Spools of earlier versions (one `<epoch>-<seq>.msg` file per message, without the length and
 * the kind) are read on resume and deleted one by one as they are acknowledged.
 */
import { closeSync, fsync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = 0x54445350; // "TDSP"
const KIND_MESSAGE = 1;
const KIND_DONE = 2;
/** magic, crc, length */
const ENTRY_HEADER = 12;

export interface SpoolMessage {
  subject: string;
  msgId: string;
  /** events inside, for the loss count if it is ever dropped */
  events: number;
  payload: Uint8Array;
}

export interface SpoolStats {
  messages: number;
  bytes: number;
  dropped: number;
  droppedEvents: number;
  corrupt: number;
}

/** A message's key: `<epoch:10>-<seq:16>` (sorts in publish order). */
const keyOf = (epoch: bigint, seq: bigint) => `${epoch.toString().padStart(10, '0')}-${seq.toString().padStart(16, '0')}`;

/** The single-file format of earlier versions (kept to resume their spools). */
export function encodeSpoolFile(m: SpoolMessage): Buffer {
  const body = messageBody(m);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([head, body]);
}

function messageBody(m: SpoolMessage, into?: Buffer, at = 0): Buffer {
  const subject = Buffer.from(m.subject);
  const msgId = Buffer.from(m.msgId);
  const size = 2 + subject.length + 2 + msgId.length + 4 + m.payload.length;
  const body = into ? into.subarray(at, at + size) : Buffer.alloc(size);
  let o = body.writeUInt16LE(subject.length, 0);
  o += subject.copy(body, o);
  o = body.writeUInt16LE(msgId.length, o);
  o += msgId.copy(body, o);
  o = body.writeUInt32LE(m.events, o);
  body.set(m.payload, o);
  return body;
}

function parseBody(body: Buffer): SpoolMessage | null {
  let o = 0;
  if (body.length < 8) return null;
  const sl = body.readUInt16LE(o);
  o += 2;
  if (o + sl + 2 > body.length) return null;
  const subject = body.toString('utf8', o, o + sl);
  o += sl;
  const ml = body.readUInt16LE(o);
  o += 2;
  if (o + ml + 4 > body.length) return null;
  const msgId = body.toString('utf8', o, o + ml);
  o += ml;
  const events = body.readUInt32LE(o);
  o += 4;
  return { subject, msgId, events, payload: body.subarray(o) };
}

/** Parses a spool file of the earlier format; null when it is truncated or fails its checksum. */
export function decodeSpoolFile(buf: Buffer): SpoolMessage | null {
  if (buf.length < 8 + 8 || buf.readUInt32LE(0) !== MAGIC) return null;
  const body = buf.subarray(8);
  if (crc32(body) !== buf.readUInt32LE(4)) return null;
  return parseBody(body);
}

/** One entry of a segment: header, kind, seq, and (for a message) its body. */
function encodeEntry(kind: number, seq: bigint, m?: SpoolMessage): Buffer {
  const bodySize = m ? 2 + Buffer.byteLength(m.subject) + 2 + Buffer.byteLength(m.msgId) + 4 + m.payload.length : 0;
  const rest = 1 + 8 + bodySize;
  const buf = Buffer.allocUnsafe(ENTRY_HEADER + rest);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(rest, 8);
  buf.writeUInt8(kind, ENTRY_HEADER);
  buf.writeBigUInt64LE(seq, ENTRY_HEADER + 1);
  if (m) messageBody(m, buf, ENTRY_HEADER + 9);
  buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
  return buf;
}

/** A file of the spool: a segment, or a single message of the earlier format. */
interface SpoolFile {
  name: string;
  legacy: boolean;
  /** messages in it that are neither acknowledged nor dropped */
  live: number;
  /** the segment being appended to (open fd), or -1 */
  fd: number;
  size: number;
}

interface Entry {
  key: string;
  seq: bigint;
  file: SpoolFile;
  /** where the message body is in the file, and its size */
  offset: number;
  length: number;
  bytes: number;
  events: number;
}

export class Spool {
  /** pending messages, oldest first */
  private readonly queue: Entry[] = [];
  private readonly stats_: SpoolStats = { messages: 0, bytes: 0, dropped: 0, droppedEvents: 0, corrupt: 0 };
  /**
   * Messages appended by this process and not yet acked, kept in memory (up to memoryBytes) so
   * that publishing them does not read back the file just written: each read was an open(),
   * a read and a checksum on the agent's only thread. The file is still written first.
   */
  private readonly inMemory = new Map<string, SpoolMessage>();
  private inMemoryBytes = 0;
  /** cap on the bytes kept in memory (default 32 MiB); older messages are read from their files */
  memoryBytes = 32 << 20;
  /** a segment is closed (fsynced) and a new one started past this size (default 4 MiB) */
  segmentBytes = 4 << 20;
  private current: SpoolFile | null = null;
  private currentEpoch = -1n;

  /** The agent start number, one more than the last run's (persisted here). */
  readonly epoch: bigint;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.epoch = this.nextEpoch();
    for (const name of readdirSync(dir).sort()) {
      if (name.endsWith('.seg')) this.resumeSegment(name);
      else if (name.endsWith('.msg')) this.resumeLegacy(name);
    }
    for (const n of readdirSync(dir)) if (n.endsWith('.tmp')) unlinkSync(join(dir, n)); // a crash mid-write (earlier format)
    this.enforceBound();
  }

  private nextEpoch(): bigint {
    const path = join(this.dir, 'epoch');
    let last = 0n;
    try {
      last = BigInt(readFileSync(path, 'utf8').trim());
    } catch {
      // first run
    }
    const epoch = last + 1n;
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, `${epoch}\n`);
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    return epoch;
  }

  private resumeLegacy(name: string): void {
    const path = join(this.dir, name);
    const buf = readFileSync(path);
    const m = decodeSpoolFile(buf);
    if (!m) {
      this.stats_.corrupt++;
      unlinkSync(path);
      return;
    }
    const file: SpoolFile = { name, legacy: true, live: 1, fd: -1, size: buf.length };
    const [epoch, seq] = name.slice(0, -4).split('-');
    this.push({ key: keyOf(BigInt(epoch!), BigInt(seq!)), seq: BigInt(seq!), file, offset: 8, length: buf.length - 8, bytes: statSync(path).size, events: m.events });
  }

  private resumeSegment(name: string): void {
    const path = join(this.dir, name);
    const buf = readFileSync(path);
    const epoch = BigInt(name.split('-')[0]!);
    const file: SpoolFile = { name, legacy: false, live: 0, fd: -1, size: buf.length };
    const found = new Map<bigint, Entry>();
    for (let o = 0; o < buf.length; ) {
      const rest = o + ENTRY_HEADER <= buf.length ? buf.readUInt32LE(o + 8) : -1;
      if (rest < 9 || buf.readUInt32LE(o) !== MAGIC || o + ENTRY_HEADER + rest > buf.length) {
        this.stats_.corrupt++; // torn or garbled from here on: what follows cannot be framed
        break;
      }
      const body = buf.subarray(o + 8, o + ENTRY_HEADER + rest);
      const next = o + ENTRY_HEADER + rest;
      if (crc32(body) !== buf.readUInt32LE(o + 4)) {
        this.stats_.corrupt++;
        o = next;
        continue;
      }
      const kind = buf.readUInt8(o + ENTRY_HEADER);
      const seq = buf.readBigUInt64LE(o + ENTRY_HEADER + 1);
      if (kind === KIND_DONE) found.delete(seq);
      else if (kind === KIND_MESSAGE) {
        const m = parseBody(buf.subarray(o + ENTRY_HEADER + 9, next));
        if (!m) this.stats_.corrupt++;
        else found.set(seq, { key: keyOf(epoch, seq), seq, file, offset: o + ENTRY_HEADER + 9, length: next - (o + ENTRY_HEADER + 9), bytes: ENTRY_HEADER + rest, events: m.events });
      }
      o = next;
    }
    if (found.size === 0) {
      unlinkSync(path);
      return;
    }
    for (const e of [...found.values()].sort((a, b) => (a.seq < b.seq ? -1 : 1))) this.push(e);
  }

  private push(e: Entry) {
    this.queue.push(e);
    e.file.live++;
    if (e.file.legacy) e.file.live = 1;
    this.stats_.messages++;
    this.stats_.bytes += e.bytes;
  }

  private enforceBound() {
    while (this.stats_.bytes > this.maxBytes && this.queue.length > 1) {
      const old = this.queue.shift()!;
      this.stats_.dropped++;
      this.stats_.droppedEvents += old.events;
      this.done(old);
    }
  }

  /** A message leaves the spool (acknowledged or dropped): recorded in its file, the file deleted once all of it is done. */
  private done(e: Entry): void {
    this.stats_.messages--;
    this.stats_.bytes -= e.bytes;
    this.forgetInMemory(e.key);
    const f = e.file;
    f.live--;
    if (f.live === 0 && f !== this.current) {
      this.remove(f);
      return;
    }
    if (f.legacy) return;
    const entry = encodeEntry(KIND_DONE, e.seq);
    try {
      if (f.fd >= 0) writeSync(f.fd, entry);
      else {
        const fd = openSync(join(this.dir, f.name), 'a');
        try {
          writeSync(fd, entry);
        } finally {
          closeSync(fd);
        }
      }
      f.size += entry.length;
    } catch {
      // the file is gone (removed by hand): nothing left to mark
    }
  }

  private remove(f: SpoolFile): void {
    if (f.fd >= 0) {
      closeSync(f.fd);
      f.fd = -1;
    }
    try {
      unlinkSync(join(this.dir, f.name));
    } catch {
      // already gone
    }
  }

  /**
   * Closes the segment being written: deleted if nothing in it is pending, else fsynced — in the
   * background when rolling (an fsync on the agent's only thread would stall reading the ring;
   * what comes after is written to the next segment meanwhile), at once when stopping.
   */
  private closeCurrent(wait: boolean): void {
    const f = this.current;
    if (!f) return;
    this.current = null;
    if (f.live === 0) {
      this.remove(f);
      return;
    }
    const fd = f.fd;
    f.fd = -1;
    if (wait) {
      fsyncSync(fd);
      closeSync(fd);
    } else fsync(fd, () => closeSync(fd));
  }

  /** Writes a message (seq within this spool's epoch); drops the oldest if over the bound. Returns its key. */
  append(seq: bigint, m: SpoolMessage, epoch = this.epoch): string {
    const entry = encodeEntry(KIND_MESSAGE, seq, m);
    if (this.current && (this.currentEpoch !== epoch || this.current.size >= this.segmentBytes)) this.closeCurrent(false);
    if (!this.current) {
      const name = `${keyOf(epoch, seq)}.seg`;
      this.current = { name, legacy: false, live: 0, fd: openSync(join(this.dir, name), 'a', 0o600), size: 0 };
      this.currentEpoch = epoch;
    }
    const f = this.current;
    const offset = f.size;
    writeSync(f.fd, entry);
    f.size += entry.length;
    const key = keyOf(epoch, seq);
    this.push({ key, seq, file: f, offset: offset + ENTRY_HEADER + 9, length: entry.length - ENTRY_HEADER - 9, bytes: entry.length, events: m.events });
    if (this.inMemoryBytes + m.payload.length <= this.memoryBytes) {
      this.inMemory.set(key, m);
      this.inMemoryBytes += m.payload.length;
    }
    this.enforceBound();
    return key;
  }

  private forgetInMemory(key: string): void {
    const m = this.inMemory.get(key);
    if (!m) return;
    this.inMemory.delete(key);
    this.inMemoryBytes -= m.payload.length;
  }

  /** The pending keys, oldest first. */
  pending(): string[] {
    return this.queue.map((q) => q.key);
  }

  /** The oldest pending key not in `except`, or undefined. */
  firstPendingExcept(except: { has(key: string): boolean }): string | undefined {
    for (const q of this.queue) if (!except.has(q.key)) return q.key;
    return undefined;
  }

  /** Where a pending message's bytes are on disk (file path, offset, length of its body). */
  location(key: string): { path: string; offset: number; length: number } | undefined {
    const e = this.queue.find((q) => q.key === key);
    return e && { path: join(this.dir, e.file.name), offset: e.offset, length: e.length };
  }

  /** Reads a pending message; null if it was dropped meanwhile or is corrupt (counted). */
  read(key: string): SpoolMessage | null {
    const kept = this.inMemory.get(key);
    if (kept) return kept;
    const e = this.queue.find((q) => q.key === key);
    if (!e) return null;
    let m: SpoolMessage | null = null;
    try {
      const path = join(this.dir, e.file.name);
      if (e.file.legacy) m = decodeSpoolFile(readFileSync(path));
      else {
        // The whole entry: its checksum covers the length, the kind and the seq too.
        const start = e.offset - 9 - ENTRY_HEADER;
        const buf = Buffer.allocUnsafe(ENTRY_HEADER + 9 + e.length);
        const fd = openSync(path, 'r');
        try {
          readSync(fd, buf, 0, buf.length, start);
        } finally {
          closeSync(fd);
        }
        if (buf.readUInt32LE(0) === MAGIC && crc32(buf.subarray(8)) === buf.readUInt32LE(4)) m = parseBody(buf.subarray(ENTRY_HEADER + 9));
      }
    } catch {
      return null;
    }
    if (!m) {
      this.stats_.corrupt++;
      this.ack(key);
    }
    return m;
  }

  /** The message is safely in JetStream: forget it. */
  ack(key: string): void {
    const i = this.queue.findIndex((q) => q.key === key);
    if (i < 0) return;
    const [e] = this.queue.splice(i, 1);
    this.done(e!);
  }

  /** Closes (and fsyncs) the segment being written; appending again opens a new one. */
  close(): void {
    this.closeCurrent(true);
  }

  stats(): SpoolStats {
    return { ...this.stats_ };
  }
}
