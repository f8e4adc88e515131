import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/main.js', import.meta.url)));

function run(...args: string[]) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!built && !process.env.CI)('bad input to tcpdwell trace: one clear line, exit code 2, no stack trace', () => {
  it.each([
    [['trace', '--port', '70000'], /not a port/],
    [['trace', '--port', 'http'], /not a port/],
    [['trace', '--family', '5'], /--family/],
    [['trace', '--format', 'xml'], /--format/],
    [['trace', '--duration', '-1'], /duration|argument/],
    [['trace', '--netns', 'no-such-netns-x'], /no such network namespace.*ip netns list/],
    [['trace', '--ring-bytes', '1000'], /power of two/],
    [['trace', '--bogus'], /unknown option/],
    [['nonsense'], /unknown command/],
    [['run', '--threshold', 'bogus=1'], /NAME=VALUE with NAME one of closeWaitAgeNs/],
    [['run', '--threshold', 'closeWaitAgeNs=soon'], /is a duration, e\.g\. 300ms/],
    [['run', '--nats', 'not a url'], /give a URL like nats:\/\/host:4222/],
    [['run', '--spool-max-bytes', 'lots'], /not a size/],
    [['tail', '--kind', 'everything'], /--kind/],
    [['states', '--netns', 'no-such-netns-x'], /no such network namespace/],
    // A file that exists but is no namespace (setns would fail with EINVAL deep in the iterator).
    [['trace', '--netns', '/etc/passwd'], /--netns \/etc\/passwd: not a network namespace/],
    [['trace', '--netns', '/proc/self/ns/mnt'], /not a network namespace \(a mnt namespace\)/],
    // An inode no namespace has: states walks namespaces, so it cannot show an empty table for it.
    [['states', '--netns', '12345'], /--netns 12345: no such network namespace/],
  ])('tcpdwell %s', (args, message) => {
    const r = run(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stdout).toBe('');
  });

  it('prints help and exits 0', () => {
    const r = run('trace', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--netns');
  });
});

describe.skipIf(!built && !process.env.CI)('tcpdwell trace without privileges', () => {
  it('says which capabilities it needs in one line and exits 1', () => {
    // As root, drop to nobody with no capabilities; unprivileged, just run it.
    const asRoot = process.getuid?.() === 0;
    const r = asRoot
      ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', bin, 'trace', '--duration', '1'], { encoding: 'utf8', timeout: 20_000 })
      : spawnSync(bin, ['trace', '--duration', '1'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/needs root, or the capabilities CAP_BPF and CAP_PERFMON/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe.skipIf(!built && !process.env.CI)('conventions: --version, --log-format json', () => {
  it('--version prints the version and the Node.js it runs on, and exits 0', () => {
    const r = run('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`tcpdwell ${JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')).version} (Node.js ${process.versions.node}, ${process.platform}-${process.arch})`);
  });

  it('--log-format json (or TCPDWELL_LOG_FORMAT=json): every stderr line is one JSON object, usage errors and command lines alike', () => {
    const lines = (stderr: string) => stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const usage = run('--log-format', 'json', 'trace', '--port', '70000');
    expect(usage.code).toBe(2);
    expect(lines(usage.stderr)).toEqual([{ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), level: 'error', msg: expect.stringMatching(/not a port/) }]);
    const after = run('uninstall', '--pin-dir', '/nonexistent/tcpdwell', '--log-format=json');
    expect(after.code).toBe(0);
    expect(lines(after.stderr)).toEqual([{ time: expect.any(String), level: 'info', command: 'uninstall', msg: 'nothing pinned in /nonexistent/tcpdwell' }]);
    const env = spawnSync(bin, ['query', '--nats', 'nats://127.0.0.1:1', '--since', '1m'], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, TCPDWELL_LOG_FORMAT: 'json' } });
    expect(env.status).toBe(1);
    expect(lines(env.stderr)).toEqual([expect.objectContaining({ level: 'error', msg: expect.stringMatching(/^cannot reach NATS at nats:\/\/127\.0\.0\.1:1/) })]);
    // Text stays what people read.
    expect(run('uninstall', '--pin-dir', '/nonexistent/tcpdwell').stderr).toBe('tcpdwell uninstall: nothing pinned in /nonexistent/tcpdwell\n');
    expect(run('--log-format', 'xml', 'explain').stderr).toMatch(/argument 'xml' is invalid\. Allowed choices are text, json/);
  });
});
