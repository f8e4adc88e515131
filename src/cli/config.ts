/**
 * The config file of `run` and `collect` (JSON, --config FILE): it can set every flag of both,
 * and flags override environment variables, which override the file, which overrides defaults.
 * One schema: SCHEMA checks each value (with the flags' own parsers, so a value reads the same
 * in both places) and FLAG_KEYS says which key each flag is (test/unit/config.test.ts fails on a
 * flag without one). A bad file gets the line and field at fault.
 *
 * File format (every key optional; durations as "30s", "500ms" or seconds, sizes as bytes or "256MiB"):
 * {
 *   "host": "web-1",
 *   "nats": { "servers": ["nats://n1:4222"], "user": "u", "password": "p", "token": "t",
 *             "nkeySeedFile": "/etc/tcpdwell/agent.nk", "credsFile": "/etc/tcpdwell/agent.creds",
 *             "tlsCaFile": "/etc/tcpdwell/ca.pem", "inboxPrefix": "_INBOX_web-1" },
 *   "spool": { "dir": "/var/lib/tcpdwell/spool", "maxBytes": "256MiB" },
 *   "filters": { "netns": [4026531840], "ports": [443], "family": "inet" },
 *   "control": { "config": true },
 *   "metrics": { "listen": "0.0.0.0:19464" },
 *   "intervals": { "status": "60s", "summary": "10s", "flush": "100ms", "heal": "5m", "evaluate": "5s" },
 *   "thresholds": { "closeWaitAgeNs": "30s" },
 *   "pins": { "dir": "/sys/fs/bpf/tcpdwell", "enabled": true },
 *   "ring": { "bytes": 16777216 },
 *   "resnapshot": false,
 *   "stream": { "name": "TCPDWELL", "create": false, "maxAge": "7d", "maxBytes": "1GiB", "replicas": 3 },
 *   "store": "/var/lib/tcpdwell/fleet.duckdb",
 *   "collect": { "durable": "tcpdwell-collect", "bucket": "tcpdwell-collect", "from": "all", "batch": 1024,
 *                "ackWait": "30s", "gapGrace": "60s", "instance": "collect-1" },
 *   "rules": { "closeWaitMinHosts": 3 },
 *   "duration": "1h"
 * }
 * Environment: TCPDWELL_NATS_URL (comma-separated), TCPDWELL_NATS_USER, TCPDWELL_NATS_PASSWORD,
 * TCPDWELL_NATS_TOKEN, TCPDWELL_NATS_NKEY_SEED_FILE, TCPDWELL_NATS_CREDS, TCPDWELL_NATS_TLS_CA,
 * TCPDWELL_NATS_INBOX_PREFIX,
 * TCPDWELL_HOST, TCPDWELL_SPOOL_DIR.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../common/errors.js';
import { listenAddress } from '../common/listen.js';
import { DEFAULT_FLEET_THRESHOLDS } from '../collect/rules.js';
import { FILTER_RULES, type KernelFilters } from '../kernel/filters.js';
import { checkInboxPrefix, type ConnectionSettings } from '../publish/connection.js';
import { DEFAULT_THRESHOLDS, parseThresholdValue } from '../track/index.js';
import { parseBytes, parseRingBytes, parseSeconds, parseSecondsOrOff } from './parsers.js';

type Scalar = string | number | boolean;

export interface FileConfig {
  host?: string;
  nats?: Partial<ConnectionSettings>;
  /** maxBytes: a number once loaded (the file may say "256MiB") */
  spool?: { dir?: string; maxBytes?: number };
  filters?: KernelFilters;
  control?: { config?: boolean };
  metrics?: { listen?: string | true };
  intervals?: Partial<Record<'status' | 'summary' | 'flush' | 'heal' | 'evaluate', number | string>>;
  thresholds?: Record<string, number | string>;
  pins?: { dir?: string; enabled?: boolean };
  ring?: { bytes?: number | string };
  resnapshot?: boolean;
  stream?: { name?: string; create?: boolean; maxAge?: number | string; maxBytes?: number | string; replicas?: number };
  /** run: a DuckDB file for the collector beside the agent; collect: a DuckDB file or clickhouse://HOST:PORT/DB */
  store?: string;
  collect?: { durable?: string; bucket?: string; from?: 'all' | 'new'; batch?: number; ackWait?: number | string; gapGrace?: number | string; instance?: string };
  rules?: Record<string, number>;
  duration?: number | string;
}

type Check = (v: unknown) => boolean;
type Rule = [Check, string];
const str: Check = (v) => typeof v === 'string' && v.length > 0;
const strs: Check = (v) => Array.isArray(v) && v.length > 0 && v.every(str);
const bool: Rule = [(v) => typeof v === 'boolean', 'true or false'];
/** A value the flag's own parser takes (numbers as they would be typed). */
const parses =
  (parse: (text: string) => unknown): Check =>
  (v) => {
    if (typeof v !== 'string' && typeof v !== 'number') return false;
    try {
      parse(String(v));
      return true;
    } catch {
      return false;
    }
  };
const seconds: Rule = [parses(parseSeconds), 'a duration like "30s", "500ms" or "5m", or seconds > 0'];
const secondsOrOff: Rule = [parses(parseSecondsOrOff), 'a duration like "300s", or 0 for never'];
const bytes = (min = 1): Rule => [(v) => parses(parseBytes)(v) && parseBytes(String(v)) >= min, `bytes (at least ${min}), or a size like "256MiB"`];
const count: Rule = [(v) => Number.isInteger(v) && (v as number) >= 1, 'a whole number of at least 1'];
const named = (names: string[], check: (name: string) => Check, what: string): Record<string, Rule> =>
  Object.fromEntries(names.map((n) => [n, [check(n), what]]));

const SCHEMA: Record<string, Record<string, Rule> | Rule> = {
  host: [str, 'a non-empty string'],
  nats: {
    servers: [strs, 'a non-empty array of URLs like "nats://host:4222"'],
    user: [str, 'a string'],
    password: [str, 'a string'],
    token: [str, 'a string'],
    nkeySeedFile: [str, 'a file path'],
    credsFile: [str, 'a file path'],
    tlsCaFile: [str, 'a file path'],
    inboxPrefix: [str, 'a subject prefix like "_INBOX_web-1"'],
  },
  spool: {
    dir: [str, 'a directory path'],
    maxBytes: bytes(1 << 20),
  },
  filters: FILTER_RULES,
  control: { config: bool },
  metrics: { listen: [(v) => v === true || (str(v) && parses((t) => listenAddress(t, 0))(v)), 'true (every interface, the default port) or "HOST:PORT"'] },
  intervals: { status: seconds, summary: seconds, flush: seconds, heal: secondsOrOff, evaluate: seconds },
  thresholds: named(Object.keys(DEFAULT_THRESHOLDS), (n) => (v) => parses((t) => parseThresholdValue(n, t))(v), 'a duration like "30s" for the *Ns thresholds, else a number > 0'),
  pins: { dir: [str, 'a bpffs directory path'], enabled: bool },
  ring: { bytes: [parses(parseRingBytes), 'a power of two of bytes, at least 4096, like 16777216'] },
  resnapshot: bool,
  stream: { name: [str, 'a stream name'], create: bool, maxAge: seconds, maxBytes: bytes(), replicas: count },
  collect: {
    durable: [str, 'a consumer name'],
    bucket: [str, 'a bucket name'],
    from: [(v) => v === 'all' || v === 'new', '"all" or "new"'],
    batch: count,
    ackWait: seconds,
    gapGrace: seconds,
    instance: [str, 'a name'],
  },
  store: [str, 'a DuckDB file path, or (collect) clickhouse://HOST:8123/DATABASE'],
  rules: named(Object.keys(DEFAULT_FLEET_THRESHOLDS), () => (v) => typeof v === 'number' && v > 0, 'a number > 0'),
  duration: seconds,
};

const CONNECTION_KEYS = {
  '--nats': 'nats.servers',
  '--user': 'nats.user',
  '--password': 'nats.password',
  '--token': 'nats.token',
  '--nkey-seed': 'nats.nkeySeedFile',
  '--creds': 'nats.credsFile',
  '--tls-ca': 'nats.tlsCaFile',
  '--inbox-prefix': 'nats.inboxPrefix',
};

/**
 * Every flag of `run` and `collect` and the key of the file that sets it. Keys under host,
 * nats, spool, filters and control are read by the command itself (with the environment
 * between the flag and the file: src/cli/commands/run.ts, connectionSettings); applyConfigFile
 * fills every other flag that the command line left at its default.
 */
export const FLAG_KEYS: Record<'run' | 'collect', Record<string, string>> = {
  run: {
    ...CONNECTION_KEYS,
    '--host': 'host',
    '--spool-dir': 'spool.dir',
    '--spool-max-bytes': 'spool.maxBytes',
    '--netns': 'filters.netns',
    '--port': 'filters.ports',
    '--family': 'filters.family',
    '--no-control-config': 'control.config',
    '--metrics-listen': 'metrics.listen',
    '--status-interval': 'intervals.status',
    '--summary-interval': 'intervals.summary',
    '--flush-interval': 'intervals.flush',
    '--heal-interval': 'intervals.heal',
    '--threshold': 'thresholds',
    '--pin-dir': 'pins.dir',
    '--ring-bytes': 'ring.bytes',
    '--no-pin': 'pins.enabled',
    '--resnapshot': 'resnapshot',
    '--create-stream': 'stream.create',
    '--stream-max-age': 'stream.maxAge',
    '--stream-max-bytes': 'stream.maxBytes',
    '--store': 'store',
    '--duration': 'duration',
  },
  collect: {
    ...CONNECTION_KEYS,
    '--stream': 'stream.name',
    '--replicas': 'stream.replicas',
    '--durable': 'collect.durable',
    '--bucket': 'collect.bucket',
    '--from': 'collect.from',
    '--batch': 'collect.batch',
    '--ack-wait': 'collect.ackWait',
    '--gap-grace': 'collect.gapGrace',
    '--instance': 'collect.instance',
    '--store': 'store',
    '--evaluate-interval': 'intervals.evaluate',
    '--rule': 'rules',
    '--metrics-listen': 'metrics.listen',
    '--status-interval': 'intervals.status',
    '--duration': 'duration',
  },
};

/** Sections the commands read themselves (see FLAG_KEYS). */
const READ_BY_COMMAND = new Set(['host', 'nats', 'spool', 'filters', 'control']);

/** The value of a dotted key in the file, if set. */
function valueAt(file: FileConfig, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), file);
}

/**
 * Fills the flags of `cmd` that the command line (or their environment variable) did not set
 * from the file, through each flag's own parser; the file has been checked by loadConfigFile.
 */
export function applyConfigFile(cmd: Command, which: 'run' | 'collect', file: FileConfig): void {
  for (const option of cmd.options) {
    const key = option.long ? FLAG_KEYS[which][option.long] : undefined;
    if (!key || READ_BY_COMMAND.has(key.split('.')[0]!)) continue;
    const value = valueAt(file, key);
    const attr = option.attributeName();
    const source = cmd.getOptionValueSource(attr);
    if (value === undefined || source === 'cli' || source === 'env') continue;
    let v: unknown;
    if (option.negate) v = value; // pins.enabled: false is --no-pin
    else if (value !== null && typeof value === 'object') {
      // --threshold NAME=VALUE, --rule NAME=VALUE: each entry as the flag would be given
      v = Object.entries(value as Record<string, Scalar>).reduce<unknown>((prev, [k, x]) => option.parseArg!(`${k}=${x}`, prev), undefined);
    } else if (typeof value === 'boolean' || !option.parseArg) v = value;
    else v = option.parseArg(String(value), undefined);
    cmd.setOptionValueWithSource(attr, v, 'config');
  }
}

/** The line of `needle` in the text, searching from `from` (a field inside its section). */
function lineOf(text: string, needle: string, from = 0): number {
  const i = text.indexOf(needle, from);
  return i < 0 ? 1 : text.slice(0, i).split('\n').length;
}

/** Reads and validates a config file; errors say the line and the field; `warn` gets a warning's text. */
export function loadConfigFile(path: string, warn: (line: string) => void = () => {}): FileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--config ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    const lineCol = /line (\d+)/.exec(msg);
    const line = lineCol ? Number(lineCol[1]) : pos ? text.slice(0, Number(pos[1])).split('\n').length : 1;
    throw new UsageError(`${path}:${line}: not valid JSON (${msg})`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UsageError(`${path}:1: the config must be a JSON object`);
  for (const [key, value] of Object.entries(data)) {
    const rule = SCHEMA[key];
    if (!rule) throw new UsageError(`${path}:${lineOf(text, `"${key}"`)}: unknown field "${key}" (known: ${Object.keys(SCHEMA).join(', ')})`);
    if (Array.isArray(rule)) {
      if (!rule[0](value)) throw new UsageError(`${path}:${lineOf(text, `"${key}"`)}: "${key}" must be ${rule[1]}`);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new UsageError(`${path}:${lineOf(text, `"${key}"`)}: "${key}" must be an object`);
    }
    const section = Math.max(0, text.indexOf(`"${key}"`));
    for (const [sub, v] of Object.entries(value)) {
      const r = rule[sub];
      const at = `${path}:${lineOf(text, `"${sub}"`, section)}`;
      if (!r) throw new UsageError(`${at}: unknown field "${key}.${sub}" (known: ${Object.keys(rule).join(', ')})`);
      if (!r[0](v)) throw new UsageError(`${at}: "${key}.${sub}" must be ${r[1]}`);
    }
  }
  const cfg = data as FileConfig;
  // Read by the command itself as a number of bytes (a size like "256MiB" is allowed here too).
  if (cfg.spool?.maxBytes !== undefined) cfg.spool.maxBytes = parseBytes(String(cfg.spool.maxBytes));
  if (cfg.nats?.password || cfg.nats?.token) {
    const mode = statSync(path).mode;
    if (mode & 0o004) warn(`${path} holds a NATS secret and is world-readable: chmod 600 ${path}`);
  }
  return cfg;
}

/** Flags > environment > file. Only fields that are set anywhere appear. */
export function connectionSettings(
  flags: Partial<ConnectionSettings>,
  env: NodeJS.ProcessEnv,
  file: FileConfig,
  fallbackServers: string[],
): ConnectionSettings {
  const pick = <T>(...vs: (T | undefined)[]) => vs.find((v) => v !== undefined);
  const envServers = env.TCPDWELL_NATS_URL?.split(',').map((s) => s.trim()).filter(Boolean);
  const s: ConnectionSettings = {
    servers: pick(flags.servers, envServers, file.nats?.servers) ?? fallbackServers,
    user: pick(flags.user, env.TCPDWELL_NATS_USER, file.nats?.user),
    password: pick(flags.password, env.TCPDWELL_NATS_PASSWORD, file.nats?.password),
    token: pick(flags.token, env.TCPDWELL_NATS_TOKEN, file.nats?.token),
    nkeySeedFile: pick(flags.nkeySeedFile, env.TCPDWELL_NATS_NKEY_SEED_FILE, file.nats?.nkeySeedFile),
    credsFile: pick(flags.credsFile, env.TCPDWELL_NATS_CREDS, file.nats?.credsFile),
    tlsCaFile: pick(flags.tlsCaFile, env.TCPDWELL_NATS_TLS_CA, file.nats?.tlsCaFile),
    inboxPrefix: pick(flags.inboxPrefix, env.TCPDWELL_NATS_INBOX_PREFIX, file.nats?.inboxPrefix),
  };
  if (s.inboxPrefix !== undefined) checkInboxPrefix(s.inboxPrefix);
  for (const url of s.servers) {
    if (!/^(nats|tls|wss?):\/\/[^\s/]+(:\d+)?\/?$/.test(url) && !/^[^\s/:]+:\d+$/.test(url)) {
      throw new UsageError(`NATS server "${url}": give a URL like nats://host:4222`);
    }
  }
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)) as unknown as ConnectionSettings;
}
