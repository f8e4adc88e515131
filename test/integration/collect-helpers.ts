/** Helpers for the collector tests: synthetic agent messages (encoded with the real wire code) and polling. */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { TcpEvent } from '../../src/decode/index.js';
import { encodeDwell, encodeSummary, encodeTransitions, type Header } from '../../src/publish/wire.js';
import { HistogramSet } from '../../src/track/index.js';
import { CLIENT_SOCKET, event } from '../helpers/events.js';

export const BOOT_TO_UNIX_NS = BigInt(Date.now()) * 1_000_000n - 1_000_000_000_000n; // "booted" 1000 s ago

export function header(host: string, seq: number, epoch = 1, bootId = `boot-${host}`): Header {
  return { hostId: host, bootId, agentVersion: 'test', epoch, seq, drops: { ringFull: 0 }, bootToUnixNs: Number(BOOT_TO_UNIX_NS), sentAtBootNs: 0 };
}

/** A transition of one socket, with what trace would print. */
export function ev(p: Partial<TcpEvent> & { tsNs: bigint; cookie: bigint }): TcpEvent {
  return event({
    type: 'transition',
    ...CLIENT_SOCKET,
    pid: 100,
    comm: 'client',
    ownerPid: 100,
    ownerComm: 'client',
    oldState: 'CLOSE',
    newState: 'SYN_SENT',
    actorIsOwner: true,
    ...p,
  });
}

/** A refused connect: CLOSE->SYN_SENT, SYN_SENT->CLOSE with ECONNREFUSED. */
export function refused(cookie: bigint, atNs: bigint, daddr = '10.0.0.9', dport = 81): TcpEvent[] {
  return [
    ev({ tsNs: atNs, cookie, daddr, dport, sport: 0 }),
    ev({ tsNs: atNs + 300_000n, cookie, daddr, dport, oldState: 'SYN_SENT', newState: 'CLOSE', enteredNs: atNs, dwellNs: 300_000n, error: 'ECONNREFUSED' }),
  ];
}

export function transitionsMsg(host: string, seq: number, events: TcpEvent[], epoch = 1) {
  return { subject: `tcpdwell.v1.${host}.transitions`, data: encodeTransitions(events, header(host, seq, epoch), 1n), msgId: `${host}.boot.${epoch}.${seq}` };
}

/** A summary with a live table, one SYN_SENT dwell histogram of the given values (µs), and stuck sockets. */
export function summaryMsg(host: string, seq: number, opts: { states: Record<string, number>; dwellUs?: number[]; stuckCloseWait?: { comm: string; ageS: number; port: number }[]; atNs?: bigint }) {
  const hs = new HistogramSet();
  for (const us of opts.dwellUs ?? []) hs.record(2, false, BigInt(us) * 1000n, 4026531840, 1n, null);
  const atNs = opts.atNs ?? (BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS);
  const data = encodeSummary(header(host, seq), {
    table: { atNs, total: opts.states, byNetns: [], sockets: 0 },
    histograms: hs.encode(),
    stuck: (opts.stuckCloseWait ?? []).map((s, i) => ({
      cookie: BigInt(1000 + i),
      netns: 4026531840,
      cgroupId: 1n,
      family: 'inet' as const,
      saddr: '10.0.0.1',
      sport: s.port,
      daddr: '10.0.0.7',
      dport: 50000 + i,
      ownerPid: 42,
      ownerComm: s.comm,
      state: 'CLOSE_WAIT',
      timewait: false,
      ageNs: BigInt(s.ageS) * 1_000_000_000n,
      ageIsLowerBound: false,
    })),
    eventsTotal: 0,
    spoolBytes: 0,
    spoolMessages: 0,
  });
  return { subject: `tcpdwell.v1.${host}.summary`, data, msgId: `${host}.boot.1.${seq}` };
}

export { encodeDwell };

/** Publishes messages to JetStream (creating the stream as the agent does if needed). */
export async function publishAll(url: string, msgs: { subject: string; data: Uint8Array; msgId?: string }[]): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.info('TCPDWELL').catch(() => jsm.streams.add({ name: 'TCPDWELL', subjects: ['tcpdwell.v1.>'], duplicate_window: 600e9 }));
    const js = jetstream(nc);
    for (const m of msgs) await js.publish(m.subject, m.data, m.msgId ? { msgID: m.msgId } : undefined);
  } finally {
    await nc.close();
  }
}

/** Polls until pred() is true (or fails after timeoutMs). */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, what: string | (() => string) = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(50);
  }
}
