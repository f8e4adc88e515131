/**
 * The one event factory for every test: an event is built as the kernel would write it — a
 * record at the generated offsets (src/kernel/abi.ts EVENT_FIELDS) — and decoded by the real
 * decoder. So a test event has every field the decoder produces, a field added to the ABI
 * reaches every test at once, and no test can build an event the kernel could not send.
 */
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlags, EventType, RstDirection, SOCKFILE_FIELDS as SF, SOCKFILE_SIZE, TwReason } from '../../src/kernel/abi.js';
import { decodeEvent, decodeSockFiles, stateValue, type ListenerQueues, type SockFile, type TcpEvent } from '../../src/decode/index.js';
import { addrBytes, errnoValue } from '../../src/publish/wire.js';

/** A client socket the synthetic tests use: 10.0.0.1:40000 → 10.0.0.2:443 in the initial namespace. */
export const CLIENT_SOCKET = { netns: 4026531840, cgroupId: 1n, family: 'inet', saddr: '10.0.0.1', sport: 40000, daddr: '10.0.0.2', dport: 443 } as const;

/** What an event says; `dwellNs` follows from tsNs and enteredNs (given, it must agree). */
export type EventSpec = Partial<TcpEvent> & { tsNs: bigint };

const TYPE = { transition: EventType.TRANSITION, timewait_start: EventType.TIMEWAIT_START, timewait_end: EventType.TIMEWAIT_END, snapshot: EventType.SNAPSHOT, reset: EventType.RESET, accept: EventType.ACCEPT } as const;
const REASON = { expired: TwReason.EXPIRED, killed: TwReason.KILLED, sent: RstDirection.SENT, received: RstDirection.RECEIVED } as const;

/** The kernel record (EVENT_SIZE bytes) of an event. Unset fields are 0, as the kernel leaves them. */
export function eventRecord(s: EventSpec): Buffer {
  const b = Buffer.alloc(EVENT_SIZE);
  const family = s.family ?? 'inet';
  b.writeBigUInt64LE(s.tsNs, F.ts_ns.offset);
  b.writeBigUInt64LE(s.cookie ?? 0n, F.cookie.offset);
  b.writeBigUInt64LE(s.enteredNs ?? 0n, F.entered_ns.offset);
  b.writeBigUInt64LE(s.expiresNs ?? 0n, F.expires_ns.offset);
  b.writeBigUInt64LE(s.cgroupId ?? 0n, F.cgroup_id.offset);
  b.writeUInt32LE(s.netns ?? 0, F.netns.offset);
  b.writeUInt32LE(s.pid ?? 0, F.pid.offset);
  b.writeUInt32LE(s.ownerPid ?? 0, F.owner_pid.offset);
  const errno = errnoValue(s.error ?? null);
  if (s.error && !errno) throw new Error(`error ${s.error} is not an errno name`);
  b.writeInt32LE(errno, F.error.offset);
  b.set(addrBytes(s.saddr ?? (family === 'inet' ? '0.0.0.0' : '::'), family), F.saddr.offset);
  b.set(addrBytes(s.daddr ?? (family === 'inet' ? '0.0.0.0' : '::'), family), F.daddr.offset);
  b.write(s.comm ?? '', F.comm.offset, F.comm.size, 'latin1');
  b.write(s.ownerComm ?? '', F.owner_comm.offset, F.owner_comm.size, 'latin1');
  b.writeUInt16LE(s.sport ?? 0, F.sport.offset);
  b.writeUInt16LE(s.dport ?? 0, F.dport.offset);
  b.writeUInt16LE(family === 'inet' ? 2 : 10, F.family.offset);
  b.writeUInt8(TYPE[s.type ?? 'transition'], F.type.offset);
  b.writeUInt8(stateValue(s.oldState ?? null), F.old_state.offset);
  b.writeUInt8(stateValue(s.newState ?? null), F.new_state.offset);
  b.writeUInt8(stateValue(s.substate ?? null), F.substate.offset);
  b.writeUInt8(s.reason ? REASON[s.reason] : 0, F.reason.offset);
  b.writeUInt8(
    (s.enteredNs != null ? EventFlags.ENTERED_KNOWN : 0) |
      (s.ownerPid != null ? EventFlags.OWNER_KNOWN : 0) |
      (s.actorIsOwner ? EventFlags.PROCESS_CTX : 0) |
      (s.child ? EventFlags.CHILD : 0) |
      (s.gap ? EventFlags.GAP : 0) |
      (s.flip ? EventFlags.FLIP : 0) |
      (s.resetBy === 'received' ? EventFlags.RST_RECEIVED : s.resetBy === 'sent' ? EventFlags.RST_SENT : 0),
    F.flags.offset,
  );
  // The vital signs: the kernel writes them at a transition to CLOSE only (a spec spread from a
  // close's event into another kind keeps its zeros; values it cannot carry are a mistake).
  const closing = (s.type ?? 'transition') === 'transition' && s.newState === 'CLOSE' && s.oldState !== 'LISTEN';
  if (s.vitals && !closing && (s.vitals.srttUs || s.vitals.totalRetrans || s.vitals.bytesAcked || s.vitals.bytesReceived)) throw new Error('vitals: only a transition to CLOSE carries them');
  if (s.vitals && closing) {
    b.writeUInt32LE(s.vitals.srttUs, F.srtt_us.offset);
    b.writeUInt32LE(s.vitals.totalRetrans, F.total_retrans.offset);
    b.writeBigUInt64LE(BigInt(s.vitals.bytesAcked), F.bytes_acked.offset);
    b.writeBigUInt64LE(BigInt(s.vitals.bytesReceived), F.bytes_received.offset);
  }
  return b;
}

/** An event as the decoder hands it over. Throws when the spec says something a record cannot. */
export function event(s: EventSpec): TcpEvent {
  const e = decodeEvent(eventRecord(s), 0);
  if (!e) throw new Error(`not an event: ${JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  // Tests count time from 0, which no kernel does: the record's 0 means "unknown", so an
  // explicit entry time of 0 is put back as the time it is (with the dwell it gives).
  if (s.enteredNs === 0n) {
    e.enteredNs = 0n;
    if (e.type === 'transition' || e.type === 'timewait_end') e.dwellNs = e.tsNs;
  }
  if (s.dwellNs !== undefined && s.dwellNs !== e.dwellNs) throw new Error(`dwellNs ${s.dwellNs} disagrees with tsNs − enteredNs (${e.dwellNs})`);
  return e;
}

/** What a socket-file record says (struct tcpdwell_sockfile: the listener and holder walks). */
export type SockFileSpec = Partial<Omit<SockFile, 'listener'>> & { listener?: Partial<ListenerQueues> };

/** A socket file as the iterator writes it and the decoder reads it back: a listener unless `state` says otherwise. */
export function sockFile(s: SockFileSpec): SockFile {
  const b = Buffer.alloc(SOCKFILE_SIZE);
  const family = s.family ?? 'inet';
  const state = s.state ?? 'LISTEN';
  b.writeBigUInt64LE(s.tsNs ?? 0n, SF.ts_ns.offset);
  b.writeBigUInt64LE(s.cookie ?? 1n, SF.cookie.offset);
  b.writeUInt32LE(s.netns ?? CLIENT_SOCKET.netns, SF.netns.offset);
  b.writeUInt32LE(s.pid ?? 1, SF.pid.offset);
  b.writeUInt32LE(s.fd ?? 3, SF.fd.offset);
  b.writeUInt16LE(s.sport ?? 443, SF.sport.offset);
  b.writeUInt16LE(family === 'inet' ? 2 : 10, SF.family.offset);
  b.set(addrBytes(s.saddr ?? (family === 'inet' ? '0.0.0.0' : '::'), family), SF.saddr.offset);
  b.write(s.comm ?? '', SF.comm.offset, SF.comm.size, 'latin1');
  b.writeUInt8(stateValue(state), SF.state.offset);
  const q = s.listener ?? {};
  b.writeUInt32LE(q.acceptQueue ?? 0, SF.ack_backlog.offset);
  b.writeUInt32LE(q.acceptQueueMax ?? 128, SF.max_ack_backlog.offset);
  b.writeUInt32LE(q.requestSocks ?? 0, SF.request_socks.offset);
  b.writeUInt32LE(q.drops ?? 0, SF.drops.offset);
  b.writeBigUInt64LE(BigInt(q.synackRetrans ?? 0), SF.synack_retrans.offset);
  const stats = { records: 0, malformed: 0 };
  const [f] = decodeSockFiles(b, stats);
  if (!f || stats.malformed) throw new Error(`not a socket file: ${JSON.stringify(s)}`);
  return f;
}
