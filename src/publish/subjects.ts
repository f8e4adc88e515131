/**
 * Every NATS name tcpdwell uses — subjects, streams, consumers, buckets, services, headers —
 * and the wire version they carry, in one place. deploy/nats/ (the server's permissions) and
 * docs/events.md spell the same names out for people.
 */

/** The wire format's version: in every subject, and the protobuf package (tcpdwell.v1). */
export const WIRE_VERSION = 'v1';
const ROOT = `tcpdwell.${WIRE_VERSION}`;

/** The kinds of agent message, as they appear in subjects: tcpdwell.v1.<host>.<kind>. */
export const KINDS = ['transitions', 'dwell', 'summary', 'alerts', 'snapshot'] as const;
export type MessageKind = (typeof KINDS)[number];

/** The JetStream stream the agents publish into (the default name) and what it captures. */
export const STREAM = 'TCPDWELL';
export const STREAM_SUBJECTS = `${ROOT}.>`;

/** True when a stream with these subjects captures ours. */
export const capturesAgentSubjects = (subjects: readonly string[] | undefined): boolean =>
  subjects?.some((s) => s === STREAM_SUBJECTS || s === '>' || s === 'tcpdwell.>') ?? false;

/** A host id as it appears in subjects: letters, digits, _ and - only. */
export const HOST_TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

/** A subject token: no dots, spaces or wildcards (a hostname's dots become _). */
export const subjectToken = (s: string): string => s.replace(/[^A-Za-z0-9_-]/g, '_');

/** Where one agent publishes one kind of message. */
export const agentSubject = (host: string, kind: MessageKind): string => `${ROOT}.${host}.${kind}`;

/** A subscription to agents' messages: one host or all, one kind or all. */
export const agentSubjects = (host?: string, kind?: string): string => `${ROOT}.${host ?? '*'}.${kind ?? '*'}`;

/** Every message of one host (or of all): a stream filter. */
export const hostSubjects = (host?: string): string => (host ? `${ROOT}.${host}.>` : STREAM_SUBJECTS);

/** The host and kind of an agent's subject; null when it is not tcpdwell.v1.<host>.<kind>. */
export function parseAgentSubject(subject: string): { host: string; kind: string } | null {
  const t = subject.split('.');
  if (t.length !== 4 || `${t[0]}.${t[1]}` !== ROOT || !HOST_TOKEN.test(t[2]!)) return null;
  return { host: t[2]!, kind: t[3]! };
}

/** Where the collector publishes its own (fleet-wide) alerts; inside the stream's subjects, so it reads them back and skips them. */
export const FLEET_ALERT_SUBJECT = `${ROOT}.alerts`;
/** NATS header on every message the collector publishes, and its value. */
export const ORIGIN_HEADER = 'Tcpdwell-Origin';
export const ORIGIN_COLLECTOR = 'collect';

/** Messages the collector could not take, with why: tcpdwell.deadletter.<reason>, in their own stream. */
export const DEADLETTER_STREAM = 'TCPDWELL_DEADLETTER';
export const DEADLETTER_PREFIX = 'tcpdwell.deadletter';

/** The collector instances' shared durable consumer and KV bucket (default names). */
export const COLLECT_DURABLE = 'tcpdwell-collect';
export const COLLECT_BUCKET = 'tcpdwell-collect';

/**
 * The agents' control service (NATS micro-services: `nats micro ls` finds them) and one agent's
 * endpoints. Not under tcpdwell.v1.>: the stream captures that, and JetStream would answer a
 * request there with a publish acknowledgement.
 */
export const CONTROL_SERVICE = 'tcpdwell';
export const controlSubject = (host: string): string => `tcpdwell.control.${host}`;

/** The agent's reply-inbox prefix unless configured: _INBOX_<host> (see deploy/nats/tcpdwell-auth.conf). */
export const defaultInboxPrefix = (host: string): string => `_INBOX_${host}`;
