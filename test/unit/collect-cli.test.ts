import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/main.js', import.meta.url)));

describe.skipIf(!built && !process.env.CI)('bad input to collect, query and agents: one clear line, exit code 2', () => {
  it.each([
    [['query', '--since', 'yesterday'], /--since yesterday: give a time like/],
    [['query', '--context', 'long'], /--context long: give a duration/],
    [['query', '--port', '70000'], /not a port/],
    [['query', '--cookie', 'abc'], /not a socket cookie/],
    [['query', '--host', 'web.1'], /a host id has only/],
    [['collect', '--rule', 'bogus=1'], /NAME=NUMBER with NAME one of closeWaitAgeS/],
    [['collect', '--replicas', '0'], /not a replica count/],
    [['collect', '--metrics-listen', 'nowhere'], /give HOST:PORT/],
    [['agents', '--format', 'xml'], /--format/],
  ])('tcpdwell %s', (args, message) => {
    const r = spawnSync(bin, args as string[], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('an unreachable broker is one line and exit 1', () => {
    const r = spawnSync(bin, ['agents', '--nats', 'nats://127.0.0.1:1'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^tcpdwell: cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
  });
});
