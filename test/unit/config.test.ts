import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectionSettings, loadConfigFile } from '../../src/cli/config.js';
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
