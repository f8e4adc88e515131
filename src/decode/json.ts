/** The JSON-lines form of an event (`trace --format json`, `tail`): documented in docs/events.md. Pure. */
import type { TcpEvent } from './event.js';

/**
 * JSON-lines form of an event: 64-bit values as decimal strings (they pass 2^53). Built as one
 * literal per kind, without object spread: spread costs microseconds per event on our VMs.
 * `time` (ISO wall-clock), when given, is placed after tsNs.
 */
export function toJson(e: TcpEvent, time?: string): Record<string, unknown> {
  const ts = e.tsNs.toString();
  const cookie = e.cookie.toString();
  switch (e.type) {
    case 'transition':
      return {
        type: e.type, tsNs: ts, time, cookie, netns: e.netns, family: e.family,
        saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport,
        oldState: e.oldState, newState: e.newState,
        dwellNs: e.dwellNs === null ? null : e.dwellNs.toString(),
        enteredNs: e.enteredNs === null ? null : e.enteredNs.toString(),
        pid: e.pid, comm: e.comm, ownerPid: e.ownerPid, ownerComm: e.ownerComm, cgroupId: e.cgroupId.toString(),
        error: e.error, child: e.child, gap: e.gap,
      };
    case 'timewait_start':
      return {
        type: e.type, tsNs: ts, time, cookie, netns: e.netns, family: e.family,
        saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport,
        substate: e.substate, expiresNs: e.expiresNs === null ? null : e.expiresNs.toString(),
        flip: e.flip, enteredNs: e.enteredNs === null ? null : e.enteredNs.toString(),
        pid: e.pid, comm: e.comm, ownerPid: e.ownerPid, ownerComm: e.ownerComm, cgroupId: e.cgroupId.toString(),
      };
    case 'timewait_end':
      return {
        type: e.type, tsNs: ts, time, cookie, netns: e.netns, family: e.family,
        saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport,
        substate: e.substate, reason: e.reason,
        dwellNs: e.dwellNs === null ? null : e.dwellNs.toString(),
        enteredNs: e.enteredNs === null ? null : e.enteredNs.toString(),
        pid: e.pid, comm: e.comm, ownerPid: e.ownerPid, ownerComm: e.ownerComm, cgroupId: e.cgroupId.toString(),
      };
    case 'snapshot':
      return {
        type: e.type, tsNs: ts, time, cookie, netns: e.netns, family: e.family,
        saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport,
        state: e.newState, substate: e.substate,
        enteredNs: e.enteredNs === null ? null : e.enteredNs.toString(),
        expiresNs: e.expiresNs === null ? null : e.expiresNs.toString(),
        ownerPid: e.ownerPid, ownerComm: e.ownerComm, cgroupId: e.cgroupId.toString(),
      };
  }
}
