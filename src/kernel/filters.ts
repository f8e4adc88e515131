/**
 * What the kernel program emits: sockets of some network namespaces, ports and one address
 * family. Written into its filter maps at start and at run time (the control service's
 * `config`); checked here once for every way they arrive (flags, config file, control requests).
 */

/** An address family as the records carry it. */
export type Family = 'inet' | 'inet6';

/** The kernel's values for them (include/linux/socket.h), as struct tcpdwell_event.family holds them. */
export const AF_INET = 2;
export const AF_INET6 = 10;

/** The kernel program's filters; an absent or empty list lets everything through. */
export interface KernelFilters {
  /** only sockets in these network namespaces (inodes) */
  netns?: readonly number[];
  /** only sockets with one of these ports at either end */
  ports?: readonly number[];
  /** only this address family */
  family?: Family | null;
}

const ints = (max: number) => (v: unknown) => Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 1 && x <= max);

/** Each filter field: whether a JSON value is valid for it, and what it must be (for the error). */
export const FILTER_RULES: Record<keyof KernelFilters, [check: (v: unknown) => boolean, what: string]> = {
  netns: [ints(0xffffffff), 'an array of network namespace inodes, integers from 1 to 4294967295'],
  ports: [ints(65535), 'an array of ports, integers from 1 to 65535'],
  family: [(v) => v === null || v === 'inet' || v === 'inet6', '"inet", "inet6" or null'],
};

/** A port typed by a person: the number, or why it is not one. */
export function parsePortText(text: string): number | { problem: string } {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) return { problem: `'${text}' is not a port: give a number from 1 to 65535` };
  return n;
}

/** `--family 4|6` as a family. */
export const familyOf = (ipVersion: '4' | '6' | undefined | null): Family | null => (ipVersion === '4' ? 'inet' : ipVersion === '6' ? 'inet6' : null);

/**
 * Whether a socket passes the filters, for what user space reads itself rather than through
 * the kernel program's (the listener walk): the same rule as wanted() in bpf/tcpdwell.bpf.c.
 */
export function passesFilters(f: KernelFilters, s: { netns: number; family: Family; sport: number; dport?: number }): boolean {
  if (f.family && f.family !== s.family) return false;
  if (f.netns?.length && !f.netns.includes(s.netns)) return false;
  if (f.ports?.length && !f.ports.includes(s.sport) && !(s.dport !== undefined && f.ports.includes(s.dport))) return false;
  return true;
}
