/** Names of kernel values: TCP states, errnos, addresses and endpoints, as people read them. Pure. */
import { constants as osConstants } from 'node:os';
import { TcpState } from '../kernel/abi.js';
import { AF_INET, AF_INET6 } from '../kernel/filters.js';

const STATE_NAMES = new Map<number, string>(Object.entries(TcpState).map(([name, value]) => [value, name]));
const STATE_VALUES = new Map<string, number>(Object.entries(TcpState));
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));
export { AF_INET, AF_INET6 };

/** Kernel TCP state name without the TCP_ prefix; values the kernel may add later decode as UNKNOWN(n). */
export function stateName(value: number): string {
  return STATE_NAMES.get(value) ?? `UNKNOWN(${value})`;
}

/** The inverse of stateName: a kernel state name (or UNKNOWN(n)) to its value; 0 for null or garbage. */
export function stateValue(name: string | null): number {
  if (name === null) return 0;
  const v = STATE_VALUES.get(name);
  if (v !== undefined) return v;
  const m = /^UNKNOWN\((\d+)\)$/.exec(name);
  return m ? Number(m[1]) : 0;
}

/** errno name for a positive errno value (E.g. 111 → ECONNREFUSED); unknown values as ERRNO(n). */
export function errnoName(value: number): string {
  return ERRNO_NAMES.get(value) ?? `ERRNO(${value})`;
}
/** RFC 5952 text form of an address held in network byte order at buf[offset..]. */
export function formatAddress(buf: Buffer, offset: number, family: number): string {
  if (family === AF_INET) return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(offset + 2 * i));
  // IPv4-mapped (::ffff:a.b.c.d), as the dual-stack sockets of an AF_INET6 listener show them.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`;
  }
  // The longest run of two or more zero words becomes "::" (the first, on a tie).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/**
 * Decodes one record of EVENT_SIZE bytes at buf[offset..]. Returns null for a record that
 * cannot be an event (unknown type or family, or fewer than EVENT_SIZE bytes); the caller counts it.

/** "addr:port", with the address in brackets for IPv6 ("[::1]:443"). */
export const endpoint = (addr: string, port: number): string => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
