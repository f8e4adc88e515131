/**
 * Flag parsers and the NATS connection flags shared by every command (trace, run, tail, states,
 * top, collect, query, agents): one wording of each usage error, one list of connection flags.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { connectionSettings, loadConfigFile } from '../config.js';
import type { ConnectionSettings } from '../publish/nats-options.js';

/** A repeatable option: each occurrence parsed and appended. */
export const repeatable =
  <T>(parse: (v: string) => T) =>
  (value: string, previous: T[] = []) => [...previous, parse(value)];

export function parsePort(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
    throw new InvalidArgumentError(`'${v}' is not a port: give a number from 1 to 65535.`);
  }
  return Number(v);
}

export function parseSeconds(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds > 0, e.g. 10 or 0.5.`);
  return n;
}

/** Seconds, or 0 to turn the thing off. */
export function parseSecondsOrOff(v: string): number {
  if (/^0+(\.0+)?$/.test(v)) return 0;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds, e.g. 300, or 0 for never.`);
  return n;
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

/** Adds the NATS connection flags (flags > environment > config file; see src/config.ts). */
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
