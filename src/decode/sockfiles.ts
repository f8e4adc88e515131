/**
 * Socket files held by processes (struct tcpdwell_sockfile, the output of the iter/task_file
 * programs dump_files and dump_listeners) → typed records. Pure: no I/O. Every offset comes
 * from the generated ABI (src/kernel/abi.ts).
 */
import { SOCKFILE_FIELDS as F, SOCKFILE_SIZE, TcpState } from '../kernel/abi.js';
import type { DecodeStats, Family } from './event.js';
import { AF_INET, AF_INET6, formatAddress, stateName } from './names.js';

/** A listener's queues as the kernel had them at the walk (see struct tcpdwell_sockfile). */
export interface ListenerQueues {
  /** connections waiting for accept() (ss Recv-Q) */
  acceptQueue: number;
  /** the accept queue's bound: the listen(2) backlog capped by somaxconn (ss Send-Q) */
  acceptQueueMax: number;
  /** half-open connections: request socks (ss SYN-RECV) */
  requestSocks: number;
  /** SYNs and completed handshakes it dropped since it was created (sk_drops), cumulative */
  drops: number;
  /** SYN-ACKs retransmitted to its half-open connections while tcpdwell watched, cumulative */
  synackRetrans: number;
}

/** One TCP socket file of one process. */
export interface SockFile {
  tsNs: bigint;
  cookie: bigint;
  netns: number;
  /** the holder: a process (tgid) and its name as ps and ss -p show it (the thread group leader's comm) */
  pid: number;
  comm: string;
  fd: number;
  state: string;
  family: Family;
  saddr: string;
  sport: number;
  /** LISTEN only */
  listener: ListenerQueues | null;
}

const u64 = (buf: Buffer, at: number): bigint => buf.readBigUInt64LE(at);

function cString(buf: Buffer, offset: number, size: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('latin1', offset, end < 0 || end > offset + size ? offset + size : end);
}

/** Decodes the iterator's back-to-back records; a record that cannot be one is counted in stats.malformed. */
export function decodeSockFiles(buf: Buffer, stats: DecodeStats): SockFile[] {
  const out: SockFile[] = [];
  let off = 0;
  for (; off + SOCKFILE_SIZE <= buf.length; off += SOCKFILE_SIZE) {
    stats.records++;
    const familyValue = buf.readUInt16LE(off + F.family.offset);
    if (familyValue !== AF_INET && familyValue !== AF_INET6) {
      stats.malformed++;
      continue;
    }
    const state = buf.readUInt8(off + F.state.offset);
    out.push({
      tsNs: u64(buf, off + F.ts_ns.offset),
      cookie: u64(buf, off + F.cookie.offset),
      netns: buf.readUInt32LE(off + F.netns.offset),
      pid: buf.readUInt32LE(off + F.pid.offset),
      comm: cString(buf, off + F.comm.offset, F.comm.size),
      fd: buf.readUInt32LE(off + F.fd.offset),
      state: stateName(state),
      family: familyValue === AF_INET ? 'inet' : 'inet6',
      saddr: formatAddress(buf, off + F.saddr.offset, familyValue),
      sport: buf.readUInt16LE(off + F.sport.offset),
      listener:
        state === TcpState.LISTEN
          ? {
              acceptQueue: buf.readUInt32LE(off + F.ack_backlog.offset),
              acceptQueueMax: buf.readUInt32LE(off + F.max_ack_backlog.offset),
              requestSocks: buf.readUInt32LE(off + F.request_socks.offset),
              drops: buf.readUInt32LE(off + F.drops.offset),
              synackRetrans: Number(u64(buf, off + F.synack_retrans.offset)),
            }
          : null,
    });
  }
  if (off !== buf.length) stats.malformed++;
  return out;
}
