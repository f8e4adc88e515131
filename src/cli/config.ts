/**
 * Agent configuration: flags override environment variables, which override the config file
 * (JSON, --config FILE), which overrides defaults. A bad file gets the line and field at fault.
 *
 * File format (every key optional):
 * {
 *   "host": "web-1",
 *   "nats": { "servers": ["nats://n1:4222"], "user": "u", "password": "p", "token": "t",
 *             "nkeySeedFile": "/etc/tcpdwell/agent.nk", "credsFile": "/etc/tcpdwell/agent.creds",
 *             "tlsCaFile": "/etc/tcpdwell/ca.pem", "inboxPrefix": "_INBOX_web-1" },
 *   "spool": { "dir": "/var/lib/tcpdwell/spool", "maxBytes": 268435456 },
 *   "filters": { "netns": [4026531840], "ports": [443], "family": "inet" },
 *   "control": { "config": true }
 * }
 * Environment: TCPDWELL_NATS_URL (comma-separated), TCPDWELL_NATS_USER, TCPDWELL_NATS_PASSWORD,
 * TCPDWELL_NATS_TOKEN, TCPDWELL_NATS_NKEY_SEED_FILE, TCPDWELL_NATS_CREDS, TCPDWELL_NATS_TLS_CA,
 * TCPDWELL_NATS_INBOX_PREFIX,
 * TCPDWELL_HOST, TCPDWELL_SPOOL_DIR.
 */
import { readFileSync, statSync } from 'node:fs';
import { UsageError } from '../common/errors.js';
import { FILTER_RULES, type KernelFilters } from '../kernel/filters.js';
import { checkInboxPrefix, type ConnectionSettings } from '../publish/connection.js';

export interface FileConfig {
  host?: string;
  nats?: Partial<ConnectionSettings>;
  spool?: { dir?: string; maxBytes?: number };
  filters?: KernelFilters;
  control?: { config?: boolean };
}

type Check = (v: unknown) => boolean;
const str: Check = (v) => typeof v === 'string' && v.length > 0;
const strs: Check = (v) => Array.isArray(v) && v.length > 0 && v.every(str);
const SCHEMA: Record<string, Record<string, [Check, string]> | [Check, string]> = {
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
    maxBytes: [(v) => Number.isInteger(v) && (v as number) >= 1 << 20, 'an integer of at least 1048576 (bytes)'],
  },
  filters: FILTER_RULES,
  control: { config: [(v) => typeof v === 'boolean', 'true or false'] },
};

function lineOf(text: string, needle: string): number {
  const i = text.indexOf(needle);
  return i < 0 ? 1 : text.slice(0, i).split('\n').length;
}

/** Reads and validates a config file; errors say the line and the field. */
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
    for (const [sub, v] of Object.entries(value)) {
      const r = rule[sub];
      const at = `${path}:${lineOf(text, `"${sub}"`)}`;
      if (!r) throw new UsageError(`${at}: unknown field "${key}.${sub}" (known: ${Object.keys(rule).join(', ')})`);
      if (!r[0](v)) throw new UsageError(`${at}: "${key}.${sub}" must be ${r[1]}`);
    }
  }
  const cfg = data as FileConfig;
  if (cfg.nats?.password || cfg.nats?.token) {
    const mode = statSync(path).mode;
    if (mode & 0o004) warn(`tcpdwell: warning: ${path} holds a NATS secret and is world-readable: chmod 600 ${path}`);
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
