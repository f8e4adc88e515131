/**
 * NATS security, against a real nats-server: TLS with a throwaway CA, NKey authentication with
 * the example permissions of deploy/nats/tcpdwell-auth.conf, secrets never in what the agent
 * prints or publishes, world-readable secret files warned about, and the control service's
 * config endpoint refused when disabled.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, nkeyAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { createUser } from '@nats-io/nkeys';
import { kernelAvailable, TestNetns, EVENTS_PER_CONNECTION } from '../kernel/helpers.js';
import { startNats, type TestNats } from './helpers.js';
import { decodeTransitions } from '../../src/publish/wire.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { ensureAgentStream } from '../../src/publish/streams.js';
import { until } from './collect-helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const AUTH_CONF = fileURLToPath(new URL('../../deploy/nats/tcpdwell-auth.conf', import.meta.url));

/** A CA and a server certificate for 127.0.0.1, made with openssl for this test only. */
function makeCa(dir: string): { ca: string; cert: string; key: string } {
  const ossl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=tcpdwell test CA');
  ossl('req', ...ec, '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ossl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') };
}

/** Every message of the stream, raw. */
async function streamBytes(opts: ConnectionOptions): Promise<{ subjects: string[]; data: Buffer[] }> {
  const nc = await connect(opts);
  try {
    const c = await jetstream(nc).consumers.get('TCPDWELL');
    const out = { subjects: [] as string[], data: [] as Buffer[] };
    for (;;) {
      let n = 0;
      for await (const m of await c.fetch({ max_messages: 1000, expires: 1000 })) {
        n++;
        out.subjects.push(m.subject);
        out.data.push(Buffer.from(m.data));
      }
      if (n === 0) return out;
    }
  } finally {
    await nc.close();
  }
}

describe.skipIf(!kernelAvailable)('NATS security: TLS, NKeys, secrets', () => {
  let dir: string;
  let netns: TestNetns;
  let nats: TestNats | null = null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tcpdwell-sec-'));
    netns = new TestNetns();
  });
  afterEach(async () => {
    netns?.delete();
    await nats?.cleanup();
    nats = null;
    rmSync(dir, { recursive: true, force: true });
  });

  /** The agent as a process, until `publishing to` (or its exit). */
  const agent = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const child = spawn(bin, ['run', '--spool-dir', join(dir, 'spool'), '--no-pin', '--netns', netns.name, '--status-interval', '0.5', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let err = '';
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const ready = new Promise<boolean>((resolve) => {
      child.stderr.on('data', (d) => (err += d) && err.includes('publishing to') && resolve(true));
      void closed.then(() => resolve(false));
    });
    return { child, ready, closed, output: () => err + out };
  };

  const withPlaceholders = (nkey: string) =>
    readFileSync(AUTH_CONF, 'utf8').replace('AGENT_WEB_1_NKEY_PUBLIC_KEY', nkey).replace('READER_PASSWORD', 'reader-pw');

  it('TLS with a CA and an NKey under the example permissions: the agent waits for the stream (it may not create it), then publishes; its control service answers, config is refused when disabled, its inbox is its own, the seed appears nowhere', async () => {
    const tls = makeCa(dir);
    const user = createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    const seedFile = join(dir, 'agent.nk');
    writeFileSync(seedFile, `${seed}\n`, { mode: 0o600 });
    nats = await startNats(`tls { cert_file: "${tls.cert}", key_file: "${tls.key}" }\n${withPlaceholders(user.getPublicKey())}`);

    const a = agent(['--nats', nats.url, '--tls-ca', tls.ca, '--nkey-seed', seedFile, '--host', 'web-1', '--no-control-config']);
    expect(await a.ready, a.output()).toBe(true);
    // No stream yet, and the agent's user may not make one (fleets provision it): it says what to
    // do and spools what it captures meanwhile.
    await until(() => /JetStream stream TCPDWELL does not exist and this agent does not create it: start tcpdwell collect/.test(a.output()), 5000, 'the missing-stream line');
    await netns.run('client-first', '127.0.0.1', 8701);
    const reader: ConnectionOptions = { servers: nats.url, user: 'reader', pass: 'reader-pw', tls: { caFile: tls.ca } };
    const operator = await connect(reader);
    try {
      expect(await ensureAgentStream(await jetstreamManager(operator), { name: 'TCPDWELL' })).toBe(true); // as tcpdwell collect makes it
    } finally {
      await operator.close();
    }
    await until(() => a.output().includes('connected to NATS'), 10_000, 'the agent to find the stream');
    await sleep(600);
    const nc = await connect(reader);
    try {
      const status = (await nc.request('tcpdwell.control.web-1.status', '', { timeout: 3000 })).json<{ host: string }>();
      expect(status.host).toBe('web-1');
      expect(JSON.stringify(status)).not.toContain(seed);
      const config = await nc.request('tcpdwell.control.web-1.config', '{"ports":[443]}', { timeout: 3000 });
      expect(config.headers?.get('Nats-Service-Error-Code')).toBe('403');
      expect(config.headers?.get('Nats-Service-Error')).toMatch(/disabled/);
    } finally {
      await nc.close();
    }

    // Inboxes: the agent's replies come under _INBOX_web-1 (its default prefix), and that is the
    // only inbox its user may listen on. The same identity (what a compromised web-1 holds)
    // cannot subscribe to another agent's replies, nor to the readers' _INBOX.
    const web1: ConnectionOptions = { servers: nats.url, authenticator: nkeyAuthenticator(user.getSeed()), tls: { caFile: tls.ca } };
    const own = await connect({ ...web1, inboxPrefix: '_INBOX_web-1' });
    try {
      const status = (await own.request('tcpdwell.control.web-1.status', '', { timeout: 3000 })).json<{ host: string }>();
      expect(status.host).toBe('web-1'); // request/reply works with the prefix
      const errors: string[] = [];
      void (async () => {
        for await (const s of own.status()) if (s.type === 'error') errors.push(String((s as { error?: Error }).error?.message));
      })();
      for (const subject of ['_INBOX_web-2.>', '_INBOX.>']) {
        const sub = own.subscribe(subject);
        const closed = await Promise.race([sub.closed, sleep(3000).then(() => 'still open')]);
        expect(String(closed), subject).toMatch(/permissions violation/i);
      }
      expect(errors.join('\n')).toMatch(/Subscription to "_INBOX_web-2\.>"/);
      // Nor can it publish into another agent's inbox (only answer what it received).
      own.publish('_INBOX_web-2.forged', 'x');
      await own.flush();
      await sleep(200);
      expect(errors.join('\n')).toMatch(/Publish to "_INBOX_web-2\.forged"/);
    } finally {
      await own.close();
    }
    // With the default prefix the same request cannot get its answer: _INBOX.> is not web-1's.
    const plain = await connect(web1);
    try {
      await expect(plain.request('tcpdwell.control.web-1.status', '', { timeout: 2000 })).rejects.toThrow(/permissions|timeout/i);
    } finally {
      await plain.close();
    }

    a.child.kill('SIGTERM');
    expect(await a.closed).toBe(0);

    const { subjects, data } = await streamBytes(reader);
    expect(subjects.length).toBeGreaterThan(0);
    expect(subjects.every((s) => s.startsWith('tcpdwell.v1.web-1.'))).toBe(true);
    const events = subjects.flatMap((s, i) => (s.endsWith('.transitions') ? decodeTransitions(data[i]!).events : []));
    expect(events).toHaveLength(EVENTS_PER_CONNECTION + 2);
    const everything = Buffer.concat([...data, Buffer.from(a.output())]);
    expect(everything.includes(seed)).toBe(false);
    expect(everything.includes(seed.slice(2, 20))).toBe(false); // nor a part of it
  });

  it('TLS without the CA: one clear line and exit 1', async () => {
    const tls = makeCa(dir);
    nats = await startNats(`tls { cert_file: "${tls.cert}", key_file: "${tls.key}" }`);
    const a = agent(['--nats', nats.url, '--host', 'web-1']);
    expect(await a.ready).toBe(false);
    expect(await a.closed).toBe(1);
    const lines = a.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tcpdwell: TLS with NATS failed: .*certificate/);
  });

  it('an NKey the server does not know: one clear line and exit 1, without the seed', async () => {
    nats = await startNats(withPlaceholders(createUser().getPublicKey()));
    const stranger = new TextDecoder().decode(createUser().getSeed());
    writeFileSync(join(dir, 'other.nk'), stranger, { mode: 0o600 });
    const a = agent(['--nats', nats.url, '--nkey-seed', join(dir, 'other.nk'), '--host', 'web-1']);
    expect(await a.closed).toBe(1);
    expect(a.output().trim().split('\n')).toHaveLength(1);
    expect(a.output()).toMatch(/NATS refused our credentials/);
    expect(a.output()).not.toContain(stranger);
  });

  it('a password in a world-readable --config is warned about, and neither it nor a token is ever printed, published or spooled', async () => {
    const password = 'pw-Zq8rT2vX9kLm';
    nats = await startNats(`authorization { users = [ { user: agent, password: "${password}" } ] }`);
    const config = join(dir, 'agent.json');
    writeFileSync(config, JSON.stringify({ nats: { servers: [nats.url], user: 'agent', password } }));
    chmodSync(config, 0o644);
    const a = agent(['--config', config, '--host', 'pw-host', '--create-stream']);
    expect(await a.ready, a.output()).toBe(true);
    expect(a.output()).toMatch(new RegExp(`warning: ${config} holds a NATS secret and is world-readable: chmod 600`));
    await netns.run('client-first', '127.0.0.1', 8702);
    await sleep(600);
    const spooled = readdirSync(join(dir, 'spool')).map((f) => readFileSync(join(dir, 'spool', f)));
    a.child.kill('SIGTERM');
    expect(await a.closed).toBe(0);
    const { data } = await streamBytes({ servers: nats.url, user: 'agent', pass: password });
    expect(data.length).toBeGreaterThan(0);
    expect(Buffer.concat([...data, ...spooled, Buffer.from(a.output())]).includes(password)).toBe(false);
    await nats.cleanup();

    // A token, given through the environment, the way the README recommends for secrets.
    const token = 'tok-Hh4pW1sN7eYc';
    nats = await startNats(`authorization { token: "${token}" }`);
    chmodSync(config, 0o600);
    const b = agent(['--nats', nats.url, '--host', 'tok-host', '--create-stream'], { TCPDWELL_NATS_TOKEN: token });
    expect(await b.ready, b.output()).toBe(true);
    await sleep(300);
    b.child.kill('SIGTERM');
    expect(await b.closed).toBe(0);
    const stored = await streamBytes({ servers: nats.url, token });
    expect(Buffer.concat([...stored.data, Buffer.from(b.output())]).includes(token)).toBe(false);
  });
});
