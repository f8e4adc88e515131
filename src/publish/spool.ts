/**
 * Store-and-forward spool: every message is written here before it is published and removed
 * once JetStream has acknowledged it, so neither a broker outage nor an agent crash (SIGKILL)
 * loses what was already captured. Bounded: when full, the oldest messages are dropped and
 * counted — never silently.
 *
 * One file per message, named so that name order is publish order:
 *   <epoch:10>-<seq:16>.msg = [u32 magic][u32 crc32 of the rest][u16 n][subject][u16 n][msgId][u32 events][payload]
 * Written to a temporary name and renamed, so a crash never leaves half a message; a file that
 * fails its checksum on resume is counted (corrupt) and removed.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = 0x54445350; // "TDSP"

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

const fileName = (epoch: bigint, seq: bigint) => `${epoch.toString().padStart(10, '0')}-${seq.toString().padStart(16, '0')}.msg`;

export function encodeSpoolFile(m: SpoolMessage): Buffer {
  const subject = Buffer.from(m.subject);
  const msgId = Buffer.from(m.msgId);
  const body = Buffer.alloc(2 + subject.length + 2 + msgId.length + 4 + m.payload.length);
  let o = body.writeUInt16LE(subject.length, 0);
  o += subject.copy(body, o);
  o = body.writeUInt16LE(msgId.length, o);
  o += msgId.copy(body, o);
  o = body.writeUInt32LE(m.events, o);
  body.set(m.payload, o);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([head, body]);
}

/** Parses a spool file; null when it is truncated or fails its checksum. */
export function decodeSpoolFile(buf: Buffer): SpoolMessage | null {
  if (buf.length < 8 + 8 || buf.readUInt32LE(0) !== MAGIC) return null;
  const body = buf.subarray(8);
  if (crc32(body) !== buf.readUInt32LE(4)) return null;
  let o = 0;
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

export class Spool {
  /** pending file names, oldest first, with their sizes */
  private readonly queue: { name: string; bytes: number; events: number }[] = [];
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

  /** The agent start number, one more than the last run's (persisted here). */
  readonly epoch: bigint;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.epoch = this.nextEpoch();
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.msg')).sort()) {
      const path = join(dir, name);
      const m = decodeSpoolFile(readFileSync(path));
      if (!m) {
        this.stats_.corrupt++;
        unlinkSync(path);
        continue;
      }
      this.push(name, statSync(path).size, m.events);
    }
    for (const n of readdirSync(dir)) if (n.endsWith('.tmp')) unlinkSync(join(dir, n)); // a crash mid-write
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

  private push(name: string, bytes: number, events: number) {
    this.queue.push({ name, bytes, events });
    this.stats_.messages++;
    this.stats_.bytes += bytes;
  }

  private enforceBound() {
    while (this.stats_.bytes > this.maxBytes && this.queue.length > 1) {
      const old = this.queue.shift()!;
      this.stats_.messages--;
      this.stats_.bytes -= old.bytes;
      this.stats_.dropped++;
      this.stats_.droppedEvents += old.events;
      this.forgetInMemory(old.name);
      try {
        unlinkSync(join(this.dir, old.name));
      } catch {
        // already gone
      }
    }
  }

  /** Writes a message (seq within this spool's epoch); drops the oldest if over the bound. Returns its key. */
  append(seq: bigint, m: SpoolMessage, epoch = this.epoch): string {
    const name = fileName(epoch, seq);
    const data = encodeSpoolFile(m);
    const tmp = join(this.dir, `${name}.tmp`);
    writeFileSync(tmp, data);
    renameSync(tmp, join(this.dir, name));
    this.push(name, data.length, m.events);
    if (this.inMemoryBytes + m.payload.length <= this.memoryBytes) {
      this.inMemory.set(name, m);
      this.inMemoryBytes += m.payload.length;
    }
    this.enforceBound();
    return name;
  }

  private forgetInMemory(key: string): void {
    const m = this.inMemory.get(key);
    if (!m) return;
    this.inMemory.delete(key);
    this.inMemoryBytes -= m.payload.length;
  }

  /** The pending keys, oldest first. */
  pending(): string[] {
    return this.queue.map((q) => q.name);
  }

  /** The oldest pending key not in `except`, or undefined. */
  firstPendingExcept(except: { has(key: string): boolean }): string | undefined {
    for (const q of this.queue) if (!except.has(q.name)) return q.name;
    return undefined;
  }

  /** Reads a pending message; null if it was dropped meanwhile or is corrupt (counted). */
  read(key: string): SpoolMessage | null {
    const kept = this.inMemory.get(key);
    if (kept) return kept;
    let buf: Buffer;
    try {
      buf = readFileSync(join(this.dir, key));
    } catch {
      return null;
    }
    const m = decodeSpoolFile(buf);
    if (!m) {
      this.stats_.corrupt++;
      this.ack(key);
    }
    return m;
  }

  /** The message is safely in JetStream: forget it. */
  ack(key: string): void {
    const i = this.queue.findIndex((q) => q.name === key);
    if (i < 0) return;
    const [q] = this.queue.splice(i, 1);
    this.forgetInMemory(key);
    this.stats_.messages--;
    this.stats_.bytes -= q!.bytes;
    try {
      unlinkSync(join(this.dir, key));
    } catch {
      // already gone
    }
  }

  stats(): SpoolStats {
    return { ...this.stats_ };
  }
}
