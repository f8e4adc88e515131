/**
 * The flags several commands share: one list of NATS connection flags, one set of kernel filter
 * flags, one output-format default (the value parsers are in parsers.ts, re-exported here).
 */
import { type Command, Option } from 'commander';
import { logger, type Logger } from '../common/log.js';
import { familyOf, type Family } from '../kernel/filters.js';
import { resolveNetns, type Netns } from '../kernel/namespaces.js';
import { DEFAULT_PIN_DIR } from '../kernel/pins.js';
import type { ConnectionSettings } from '../publish/connection.js';
import { connectionSettings, loadConfigFile } from './config.js';
import { parseBytes, parsePort, parseRingBytes, parseSeconds, parseSecondsOrOff, parseSpan, parseTime, positiveInt, repeatable } from './parsers.js';

export { parseBytes, parsePort, parseRingBytes, parseSeconds, parseSecondsOrOff, parseSpan, parseTime, positiveInt, repeatable };

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
export function resolveConnection(o: ConnectionFlags, fallbackServers = ['nats://127.0.0.1:4222'], log: Pick<Logger, 'warn'> = logger('')): ConnectionSettings {
  const file = o.config ? loadConfigFile(o.config, log.warn) : {};
  return connectionSettings(connectionFlags(o), process.env, file, fallbackServers);
}
