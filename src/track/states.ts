/** TCP state values and names for the tracker, from the generated ABI (never a hand-written table). */
import { TcpState } from '../kernel/abi.js';
import { stateName, stateValue as anyStateValue } from '../decode/index.js';

/** One past the largest state value the table can hold (kernel values are u8; 13 is the largest today). */
export const STATE_SLOTS = 32;

/** State value by kernel name, for the table's slots: values past STATE_SLOTS (e.g. UNKNOWN(40)) map to 0, which is never counted as a state. */
export function stateValue(name: string | null): number {
  const n = anyStateValue(name);
  return n < STATE_SLOTS ? n : 0;
}

export { stateName };

export const S = TcpState;

/** What `ss` prints for each kernel state name. */
const SS_NAMES: Record<string, string> = {
  ESTABLISHED: 'ESTAB',
  SYN_SENT: 'SYN-SENT',
  SYN_RECV: 'SYN-RECV',
  NEW_SYN_RECV: 'SYN-RECV',
  FIN_WAIT1: 'FIN-WAIT-1',
  FIN_WAIT2: 'FIN-WAIT-2',
  TIME_WAIT: 'TIME-WAIT',
  CLOSE: 'UNCONN',
  CLOSE_WAIT: 'CLOSE-WAIT',
  LAST_ACK: 'LAST-ACK',
  LISTEN: 'LISTEN',
  CLOSING: 'CLOSING',
  BOUND_INACTIVE: 'BOUND-INACTIVE',
};

/** The name `ss` uses for a kernel state name (request socks and SYN_RECV sockets both show as SYN-RECV). */
export function ssStateName(name: string): string {
  return SS_NAMES[name] ?? name;
}

/** Counts by kernel state name → counts by the names `ss -tan` prints, summed where ss merges two. */
export function toSsCounts(counts: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of Object.entries(counts)) {
    const ss = ssStateName(name);
    out[ss] = (out[ss] ?? 0) + n;
  }
  return out;
}
