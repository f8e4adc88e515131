/**
 * Flag parsers and the flags several commands share: one wording of each usage error, one list
 * of NATS connection flags, one set of kernel filter flags, one output-format default.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { parseDurationNs } from '../common/durations.js';
import { UsageError } from '../common/errors.js';
import { familyOf, parsePortText, type Family } from '../kernel/filters.js';
import { resolveNetns, type Netns } from '../kernel/namespaces.js';
import { DEFAULT_PIN_DIR } from '../kernel/pins.js';
import type { ConnectionSettings } from '../publish/connection.js';
import { connectionSettings, loadConfigFile } from './config.js';

/** A repeatable option: each occurrence parsed and appended. */
export const repeatable =
  <T>(parse: (v: string) => T) =>
  (value: string, previous: T[] = []) => [...previous, parse(value)];

export function parsePort(v: string): number {
  const p = parsePortText(v);
  if (typeof p !== 'number') throw new InvalidArgumentError(`${p.problem}.`);
  return p;
}

/** Seconds (a bare number) or a duration with its unit (500ms, 5m), > 0. */
export function parseSeconds(v: string): number {
  const ns = parseDurationNs(v, 's');
  if (!ns) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds > 0, e.g. 10 or 0.5.`);
  return ns / 1e9;
}

/** Seconds, or 0 to turn the thing off. */
export function parseSecondsOrOff(v: string): number {
  const ns = parseDurationNs(v, 's');
  if (ns === null) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds, e.g. 300, or 0 for never.`);
  return ns / 1e9;
}

/** "1h", "30m", "2d", "90s" (ago), or an ISO-8601 time → Unix ms. */
export function parseTime(v: string, flag: string, nowMs = Date.now()): number {
  const ago = parseDurationNs(v, null);
  if (ago !== null) return nowMs - ago / 1e6;
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`${flag} ${v}: give a time like 2024-05-01T08:00:00Z, or how long ago, e.g. 90s, 30m, 1h, 2d`);
}

/** "90s", "5m" → ms. */
export function parseSpan(v: string, flag: string): number {
  const ns = parseDurationNs(v, null);
  if (ns === null) throw new UsageError(`${flag} ${v}: give a duration like 90s, 5m, 1h`);
  return ns / 1e6;
}

export function parseRingBytes(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 4096 || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`'${v}' is not a ring size: give a power of two of at least 4096 (bytes).`);
  }
  return n;
}

export function parseBytes(v: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v);
  if (!m) throw new InvalidArgumentError(`'${v}' is not a size: give bytes, or e.g. 256MiB.`);
  const unit = (m[2] ?? '').toUpperCase()[0];
  return Number(m[1]) * (unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1);
}

export const positiveInt = (what: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`'${v}' is not ${what}: give a whole number of at least 1.`);
  return Number(v);
};

/** --duration: how long a command runs before it stops by itself. */
export const addDurationOption = (cmd: Command): Command => cmd.option('--duration <seconds>', 'stop after this many seconds', parseSeconds);

// ---- kernel filters --------------------------------------------------------------------

/** The kernel filter flags as commander hands them over. */
export interface FilterFlags {
  netns: string[];
  port: number[];
  family?: '4' | '6';
}

/** --netns, --port, --family: what the kernel program emits (`scope` prefixes each help, e.g. 'this host: '). */
export function addFilterOptions(cmd: Command, o: { scope?: string; netnsHelp?: string; ports?: boolean; family?: boolean } = {}): Command {
  const scope = o.scope ?? '';
  cmd.option('--netns <name|path|inode>', `${scope}${o.netnsHelp ?? 'only this network namespace (repeatable)'}`, repeatable(String), []);
  if (o.ports !== false) cmd.option('--port <n>', `${scope}only sockets with this port at either end (repeatable)`, repeatable(parsePort), []);
  if (o.family !== false) cmd.addOption(new Option('--family <4|6>', `${scope}only IPv4 or only IPv6`).choices(['4', '6']));
  return cmd;
}

/**
 * The filter flags resolved: namespaces found (UsageError when one is not; with `needPath`, also
 * when no path on this host opens it, for commands that walk its sockets), ports, family.
 */
export function filtersFrom(o: Partial<FilterFlags>, opts: { needPath?: boolean } = {}): { netns: Netns[]; ports: number[]; family: Family | null } {
  return { netns: (o.netns ?? []).map((spec) => resolveNetns(spec, undefined, opts)), ports: o.port ?? [], family: familyOf(o.family) };
}

/** --agent-pin-dir: where a running agent keeps its per-socket state, read by trace, states and top. */
export const addAgentPinOption = (cmd: Command): Command =>
  cmd.option(
    '--agent-pin-dir <dir>',
    "read a running agent's pinned per-socket state (its run --pin-dir), so sockets older than this command show their real age and owner; read only",
    DEFAULT_PIN_DIR,
  );

// ---- output ----------------------------------------------------------------------------

/** --format: text on a terminal, JSON lines (or what `pipedDefault` says) otherwise. */
export function addFormatOption(cmd: Command, help: string, choices: readonly string[] = ['json', 'text']): Command {
  return cmd.addOption(new Option('--format <format>', `${help} (default: text on a terminal, json otherwise)`).choices([...choices]));
}

/** The output format: the one given, else text on a terminal and JSON lines otherwise. */
export const outputFormat = <F extends string>(given: F | undefined): F | 'text' | 'json' => given ?? (process.stdout.isTTY ? 'text' : 'json');

// ---- NATS connection ---------------------------------------------------------------------

/** The NATS connection flags as commander hands them over. */
export interface ConnectionFlags {
  nats?: string;
  user?: string;
  password?: string;
  token?: string;
  nkeySeed?: string;
  creds?: string;
  tlsCa?: string;
  inboxPrefix?: string;
  config?: string;
}

/** Adds the NATS connection flags (flags > environment > config file; see src/cli/config.ts). */
export function addConnectionOptions(cmd: Command, natsHelp = 'NATS server URL(s), comma-separated (env TCPDWELL_NATS_URL)'): Command {
  return cmd
    .option('--nats <urls>', natsHelp)
    .option('--user <user>', 'NATS user (env TCPDWELL_NATS_USER)')
    .option('--password <password>', 'NATS password (env TCPDWELL_NATS_PASSWORD; prefer the env or a config file)')
    .option('--token <token>', 'NATS token (env TCPDWELL_NATS_TOKEN)')
    .option('--nkey-seed <file>', 'file with an NKey seed (env TCPDWELL_NATS_NKEY_SEED_FILE)')
    .option('--creds <file>', 'NATS credentials file (env TCPDWELL_NATS_CREDS)')
    .option('--tls-ca <file>', 'CA certificate to verify the server (env TCPDWELL_NATS_TLS_CA)')
    .option('--inbox-prefix <prefix>', 'subject prefix of reply inboxes (env TCPDWELL_NATS_INBOX_PREFIX; run default _INBOX_<host>, others _INBOX)')
    .option('--config <file>', 'JSON config file (see README: Configuration)');
}

/** The flags' part of the connection settings (what the command line set, nothing else). */
export function connectionFlags(o: ConnectionFlags): Partial<ConnectionSettings> {
  return {
    servers: o.nats?.split(',').map((s) => s.trim()).filter(Boolean),
    user: o.user,
    password: o.password,
    token: o.token,
    nkeySeedFile: o.nkeySeed,
    credsFile: o.creds,
    tlsCaFile: o.tlsCa,
    inboxPrefix: o.inboxPrefix,
  };
}

/** Flags, environment and config file together, for commands that only connect (tail, query, ...). */
export function resolveConnection(o: ConnectionFlags, fallbackServers = ['nats://127.0.0.1:4222']): ConnectionSettings {
  const file = o.config ? loadConfigFile(o.config, (l) => process.stderr.write(`${l}\n`)) : {};
  return connectionSettings(connectionFlags(o), process.env, file, fallbackServers);
}
