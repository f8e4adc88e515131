/**
 * The config file sets what the flags set: real `tcpdwell collect` and `tcpdwell run` processes
 * started with nothing but --config, against a real nats-server, doing what the file says.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { kernelAvailable } from '../kernel/helpers.js';
import { agentFixture, spawnUntil, startNats } from './helpers.js';
import { until } from './collect-helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

function configFile(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-config-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
  return path;
}

const statusLines = (err: string, cmd: string) => err.split('\n').filter((l) => l.startsWith(`tcpdwell ${cmd}: `) && /\d+ (counted|events in)/.test(l)).length;

describe('--config alone configures a command', () => {
  it('tcpdwell collect: stream, durable, metrics and status interval from the file', async () => {
    const nats = await startNats();
    onTestFinished(() => nats.cleanup());
    const path = configFile({ nats: { servers: [nats.url] }, stream: { name: 'FROMFILE' }, collect: { durable: 'dur-from-file' }, metrics: { listen: '127.0.0.1:0' }, intervals: { status: '200ms' } });
    const c = await spawnUntil(bin, ['collect', '--config', path], 'Ctrl-C to stop');
    onTestFinished(() => void c.child.kill('SIGKILL'));
    expect(c.err()).toMatch(/consuming FROMFILE \(tcpdwell\.v1\.>\) as durable dur-from-file/);
    const url = /metrics at (http:\S+)/.exec(c.err())![1]!;
    expect((await fetch(url)).status).toBe(200);
    await until(() => statusLines(c.err(), 'collect') >= 3, 5000, 'status lines every 200 ms');
    c.child.kill('SIGTERM');
  });

  it.skipIf(!kernelAvailable)('tcpdwell run: stream creation, filters, spool, pins, metrics and status interval from the file', async () => {
    const { nats, netns, spoolDir: spool } = await agentFixture();
    const path = configFile({
      host: 'from-file',
      nats: { servers: [nats.url] },
      spool: { dir: spool, maxBytes: '16MiB' },
      filters: { netns: [netns.ns.inode] },
      pins: { enabled: false },
      stream: { create: true, maxBytes: '64MiB' },
      metrics: { listen: '127.0.0.1:0' },
      intervals: { status: '300ms' },
    });
    const a = await spawnUntil(bin, ['run', '--config', path], 'publishing to');
    onTestFinished(() => void a.child.kill('SIGKILL'));
    expect(a.err()).toMatch(/created JetStream stream TCPDWELL/);
    expect(a.err()).toContain(`publishing to tcpdwell.v1.from-file.{transitions,summary,snapshot} (spool ${spool})`);
    const base = /metrics at (http:\S+)\/metrics/.exec(a.err())![1]!;
    expect(await (await fetch(`${base}/readyz`)).json()).toMatchObject({ status: 'ok' });
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^tcpdwell_spool_max_bytes 16777216$/m); // the spool bound from the file
    await until(() => statusLines(a.err(), 'run') >= 3, 5000, 'status lines every 300 ms');
    a.child.kill('SIGTERM');
    expect(await new Promise((r) => a.child.on('close', r))).toBe(0);
  });
});
