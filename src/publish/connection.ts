/** How to reach NATS: servers and credentials, turned into nats.js connect options, and connecting. */
import { readFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/nats-core';
import { EnvironmentError, UsageError } from '../common/errors.js';

export interface ConnectionSettings {
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  /** file holding an NKey seed (SU...) */
  nkeySeedFile?: string;
  /** a .creds file (JWT + seed) */
  credsFile?: string;
  /** CA certificate (PEM) to verify the server's TLS certificate */
  tlsCaFile?: string;
  /** client name shown by the server (e.g. tcpdwell-agent@host) */
  name?: string;
  /**
   * Subject prefix of this client's reply inboxes (nats.js default "_INBOX"). The agent uses
   * "_INBOX_<host>" unless told otherwise, so the server can let each agent subscribe to its own
   * replies only (deploy/nats/tcpdwell-auth.conf).
   */
  inboxPrefix?: string;
}

/** A subject prefix for inboxes: dot-separated tokens, no wildcards or spaces. */
export function checkInboxPrefix(p: string): string {
  if (!/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(p)) {
    throw new UsageError(`inbox prefix "${p}": give subject tokens without wildcards or spaces, e.g. _INBOX_web-1`);
  }
  return p;
}

function readSecret(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read the ${what} file ${path}: ${(err as Error).message}`);
  }
}

export function natsConnectOptions(s: ConnectionSettings): ConnectionOptions {
  const o: ConnectionOptions = { servers: s.servers, name: s.name };
  if (s.inboxPrefix !== undefined) o.inboxPrefix = checkInboxPrefix(s.inboxPrefix);
  if (s.user !== undefined) {
    o.user = s.user;
    o.pass = s.password;
  }
  if (s.token !== undefined) o.token = s.token;
  if (s.nkeySeedFile) {
    const seed = new TextDecoder().decode(readSecret(s.nkeySeedFile, 'NKey seed')).trim();
    o.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (s.credsFile) o.authenticator = credsAuthenticator(readSecret(s.credsFile, 'credentials'));
  if (s.tlsCaFile) {
    readSecret(s.tlsCaFile, 'TLS CA');
    o.tls = { caFile: s.tlsCaFile };
  }
  return o;
}

/**
 * Connects with these settings (and any client options over them); a failure is one
 * EnvironmentError saying which servers could not be reached and why.
 */
export async function connectNats(s: ConnectionSettings, over: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  try {
    return await connect({ ...natsConnectOptions(s), ...over });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new EnvironmentError(`cannot reach NATS at ${s.servers.join(',')}: ${(err as Error).message}`, { cause: err });
  }
}

/** Follows a connection's status events: whether it is connected right now (readiness). */
export function watchConnection(nc: NatsConnection): { readonly connected: boolean } {
  const state = { connected: !nc.isClosed() };
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') state.connected = false;
      else if (s.type === 'reconnect') state.connected = true;
    }
    state.connected = false;
  })();
  return state;
}
