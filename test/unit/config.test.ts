import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyConfigFile, connectionSettings, FLAG_KEYS, loadConfigFile } from '../../src/cli/config.js';
import { buildProgram } from '../../src/cli/program.js';
import { parseConfigRequest } from '../../src/publish/service.js';

const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
};

describe('the config file: errors name the line and the field', () => {
  it('reads a valid file', () => {
    const p = file('ok.json', JSON.stringify({ host: 'web-1', nats: { servers: ['nats://n1:4222'], user: 'u' }, filters: { ports: [443] } }, null, 2));
    expect(loadConfigFile(p)).toMatchObject({ host: 'web-1', nats: { user: 'u' } });
  });

  it('points at the line of a JSON syntax error', () => {
    const p = file('syntax.json', '{\n  "host": "a",\n  "nats": { "servers": ["x"] },,\n}\n');
    expect(() => loadConfigFile(p)).toThrow(/syntax\.json:3: not valid JSON/);
  });

  it('names an unknown field and its line', () => {
    const p = file('unknown.json', '{\n  "host": "a",\n  "nats": {\n    "sever": ["nats://x:1"]\n  }\n}\n');
    expect(() => loadConfigFile(p)).toThrow(/unknown\.json:4: unknown field "nats\.sever"/);
  });

  it('names a field of the wrong type and says what it must be', () => {
    const p = file('type.json', '{\n  "filters": { "ports": [70000] }\n}\n');
    expect(() => loadConfigFile(p)).toThrow(/type\.json:2: "filters\.ports" must be an array of ports/);
  });

  it('warns when a file holding a secret is world-readable', () => {
    const p = file('secret.json', JSON.stringify({ nats: { password: 'p' } }));
    chmodSync(p, 0o644);
    const warnings: string[] = [];
    loadConfigFile(p, (l) => warnings.push(l));
    expect(warnings.join()).toMatch(/world-readable: chmod 600/);
  });
});

describe('connection settings: flags over environment over file', () => {
  it('takes each field from the first place that sets it', () => {
    const s = connectionSettings(
      { user: 'flag-user' },
      { TCPDWELL_NATS_URL: 'nats://env:4222', TCPDWELL_NATS_PASSWORD: 'env-pw' },
      { nats: { servers: ['nats://file:4222'], user: 'file-user', token: 'file-token' } },
      [],
    );
    expect(s).toEqual({ servers: ['nats://env:4222'], user: 'flag-user', password: 'env-pw', token: 'file-token' });
  });

  it('takes the inbox prefix from flag, environment or file, and rejects one with a wildcard', () => {
    const p = file('inbox.json', JSON.stringify({ nats: { inboxPrefix: '_INBOX_file' } }));
    const f = loadConfigFile(p);
    expect(connectionSettings({}, {}, f, ['nats://a:1']).inboxPrefix).toBe('_INBOX_file');
    expect(connectionSettings({}, { TCPDWELL_NATS_INBOX_PREFIX: '_INBOX_env' }, f, ['nats://a:1']).inboxPrefix).toBe('_INBOX_env');
    expect(connectionSettings({ inboxPrefix: '_INBOX_web-1' }, { TCPDWELL_NATS_INBOX_PREFIX: '_INBOX_env' }, f, ['nats://a:1']).inboxPrefix).toBe('_INBOX_web-1');
    for (const bad of ['_INBOX.>', 'a b', 'x.', '*']) {
      expect(() => connectionSettings({ inboxPrefix: bad }, {}, {}, ['nats://a:1'])).toThrow(/inbox prefix .*without wildcards or spaces/);
    }
  });

  it('rejects a server that is not a URL', () => {
    expect(() => connectionSettings({ servers: ['not a url'] }, {}, {}, [])).toThrow(/give a URL like nats:\/\/host:4222/);
  });
});

describe("the control service's config request", () => {
  it('accepts filters and rejects anything else with a reason', () => {
    expect(parseConfigRequest('{"ports":[443],"family":"inet6"}')).toEqual({ filters: { ports: [443], netns: undefined, family: 'inet6' } });
    expect(parseConfigRequest('{"thresholds":{"closeWaitAgeNs":"30s","connectFailures":20}}')).toEqual({
      thresholds: { closeWaitAgeNs: 30_000_000_000n, connectFailures: 20 },
    });
    expect(() => parseConfigRequest('{"thresholds":{"closeWaitAgeNs":"soon"}}')).toThrow(/closeWaitAgeNs is a duration/);
    expect(() => parseConfigRequest('{"thresholds":{"bogus":1}}')).toThrow(/unknown threshold bogus/);
    expect(() => parseConfigRequest('{"port":[1]}')).toThrow(/unknown field "port"/);
    expect(() => parseConfigRequest('{"ports":[0]}')).toThrow(/integers from 1 to 65535/);
    expect(() => parseConfigRequest('nope')).toThrow(/must be JSON/);
  });
});

describe('one schema for every flag of run and collect', () => {
  const commandOf = (name: string) => buildProgram().commands.find((c) => c.name() === name)!;
  const flagsOf = (name: string) => commandOf(name).options.map((o) => o.long!).filter((f) => f !== '--config');

  it('every flag of run and collect has its key in the file, and every key is one the file accepts', () => {
    for (const name of ['run', 'collect'] as const) {
      expect(Object.keys(FLAG_KEYS[name]).sort(), name).toEqual(flagsOf(name).sort());
    }
    // A file that sets every key is accepted: the schema knows each one.
    const every: Record<string, unknown> = {};
    const sample: Record<string, unknown> = {
      'nats.servers': ['nats://n1:4222'], 'filters.netns': [4026531840], 'filters.ports': [443], 'filters.family': 'inet',
      'control.config': true, 'pins.enabled': false, resnapshot: true, 'stream.create': true, 'metrics.listen': '127.0.0.1:19464',
      thresholds: { closeWaitAgeNs: '30s' }, rules: { closeWaitMinHosts: 3 }, 'collect.from': 'new', 'collect.batch': 64, 'stream.replicas': 3,
      'spool.maxBytes': '256MiB', 'stream.maxBytes': '1GiB', 'intervals.heal': 0, 'ring.bytes': 16777216,
    };
    for (const key of new Set([...Object.values(FLAG_KEYS.run), ...Object.values(FLAG_KEYS.collect)])) {
      const v = sample[key] ?? (/interval|duration|maxAge|ackWait|gapGrace|^intervals\./i.test(key) ? '5s' : 'x');
      const parts = key.split('.');
      if (parts.length === 1) every[key] = v;
      else every[parts[0]!] = { ...(every[parts[0]!] as object), [parts[1]!]: v };
    }
    const cfg = loadConfigFile(file('every.json', JSON.stringify(every, null, 2)));
    expect(cfg.spool?.maxBytes).toBe(256 * 1024 ** 2);
    expect(cfg.stream).toMatchObject({ maxBytes: '1GiB', replicas: 3, create: true });
  });

  it('reads values with the flags’ own grammar, and a bad one names its line (the right section’s)', () => {
    const p = file('bad-interval.json', '{\n  "spool": { "maxBytes": "64MiB" },\n  "stream": {\n    "maxBytes": "lots"\n  }\n}\n');
    expect(() => loadConfigFile(p)).toThrow(/bad-interval\.json:4: "stream\.maxBytes" must be bytes \(at least 1\), or a size like "256MiB"/);
    expect(() => loadConfigFile(file('t.json', '{\n  "thresholds": { "closeWaitAgeNs": "soon" }\n}'))).toThrow(/t\.json:2: "thresholds\.closeWaitAgeNs" must be a duration/);
    expect(() => loadConfigFile(file('m.json', '{ "metrics": { "listen": "nowhere" } }'))).toThrow(/"metrics\.listen" must be true .* or "HOST:PORT"/);
    expect(() => loadConfigFile(file('u.json', '{\n\n  "intervals": { "status": "5s", "sumary": "1s" }\n}'))).toThrow(/u\.json:3: unknown field "intervals\.sumary" \(known: status, summary, flush, heal, evaluate\)/);
  });

  it('fills what the command line left at its default, through the flags’ parsers; the command line wins', async () => {
    const p = file('run.json', JSON.stringify({
      intervals: { status: '250ms', summary: 30, heal: 0 }, metrics: { listen: true }, pins: { dir: '/sys/fs/bpf/x', enabled: false },
      thresholds: { closeWaitAgeNs: '30s', connectFailures: 7 }, stream: { create: true, maxAge: '2h', maxBytes: '64MiB' }, resnapshot: true, duration: '1m',
    }));
    const parsed = async (name: 'run' | 'collect', argv: string[]) => {
      const program = buildProgram();
      const cmd = program.commands.find((c) => c.name() === name)!;
      let seen: Record<string, unknown> = {};
      // The command's own options and parsers; the action only reports what it would run with.
      cmd.action((flags: { config?: string }, c) => {
        applyConfigFile(c, name, flags.config ? loadConfigFile(flags.config) : {});
        seen = c.opts();
      });
      await program.parseAsync([name, ...argv], { from: 'user' });
      return seen;
    };
    expect(await parsed('run', ['--config', p, '--summary-interval', '5'])).toMatchObject({
      statusInterval: 0.25, summaryInterval: 5, healInterval: 0, metricsListen: true, pinDir: '/sys/fs/bpf/x', pin: false, resnapshot: true, duration: 60,
      threshold: { closeWaitAgeNs: 30_000_000_000n, connectFailures: 7 }, createStream: true, streamMaxAge: 7200, streamMaxBytes: 64 * 1024 ** 2,
    });
    // Without the file: the defaults.
    expect(await parsed('run', [])).toMatchObject({ statusInterval: 5, pin: true, threshold: {} });
    const c = file('collect.json', JSON.stringify({ stream: { name: 'OTHER', replicas: 3 }, collect: { durable: 'd', from: 'new', batch: 64, ackWait: '1m' }, rules: { closeWaitMinHosts: 4 }, intervals: { evaluate: '2s', status: 60 } }));
    expect(await parsed('collect', ['--config', c, '--batch', '8'])).toMatchObject({ stream: 'OTHER', replicas: 3, durable: 'd', from: 'new', batch: 8, ackWait: 60, rule: { closeWaitMinHosts: 4 }, evaluateInterval: 2, statusInterval: 60 });
  });
});
