import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TcpState } from '../../src/kernel/abi.js';
import { EXPLAIN } from '../../src/track/index.js';
import { DETECTOR_STATE, explain, explainOverview, explainState, resolveState, STATE_EXPLANATIONS, type StateName } from '../../src/track/explain.js';
import { UsageError } from '../../src/common/errors.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/main.js', import.meta.url)));

describe('tcpdwell explain', () => {
  it.each(Object.keys(TcpState))('explains %s, a state the kernel defines, in all four parts', (state) => {
    const x = STATE_EXPLANATIONS[state as StateName];
    expect(x, `${state} has no explanation in src/explain.ts`).toBeDefined();
    for (const part of [x.summary, x.meaning, x.normal, x.incident, x.check]) expect(part.length).toBeGreaterThan(10);
  });

  it('has no explanation for a state the kernel does not define', () => {
    expect(Object.keys(STATE_EXPLANATIONS).sort()).toEqual(Object.keys(TcpState).sort());
  });

  it('shows a detector\'s own explanation instead of repeating it', () => {
    const text = explainState('CLOSE_WAIT').join(' ').replace(/\s+/g, ' ');
    expect(text).toContain(EXPLAIN.close_wait_leak.replace(/\s+/g, ' '));
    for (const [detector, state] of Object.entries(DETECTOR_STATE)) {
      expect(STATE_EXPLANATIONS[state].detectors).toContain(detector);
    }
    // every detector is reachable from some state
    const reachable = new Set(Object.values(STATE_EXPLANATIONS).flatMap((x) => x.detectors));
    expect([...reachable].sort()).toEqual(Object.keys(EXPLAIN).sort());
  });

  it('says what the classic netstat guides say about each pile-up', () => {
    expect(STATE_EXPLANATIONS.CLOSE_WAIT.meaning).toMatch(/application/);
    expect(STATE_EXPLANATIONS.NEW_SYN_RECV.incident).toMatch(/SYN flood/);
    expect(STATE_EXPLANATIONS.SYN_SENT.incident).toMatch(/unreachable|scan/);
    expect(STATE_EXPLANATIONS.TIME_WAIT.meaning).toMatch(/2×MSL, 60 s on Linux/);
    expect(STATE_EXPLANATIONS.TIME_WAIT.incident).toMatch(/ephemeral ports/);
    expect(STATE_EXPLANATIONS.ESTABLISHED.check).toMatch(/keep-alive/);
  });

  it.each([
    ['CLOSE_WAIT', 'CLOSE_WAIT'],
    ['close-wait', 'CLOSE_WAIT'],
    ['CLOSE-WAIT', 'CLOSE_WAIT'],
    ['ESTAB', 'ESTABLISHED'],
    ['UNCONN', 'CLOSE'],
    ['SYN-RECV', 'SYN_RECV'],
    ['time_wait_pressure', 'TIME_WAIT'],
  ])('reads %s as %s', (input, state) => {
    expect(resolveState(input)).toBe(state);
  });

  it('refuses an unknown state with a usage error that lists the states', () => {
    expect(() => resolveState('FOO')).toThrow(UsageError);
    expect(() => resolveState('FOO')).toThrow(/ESTABLISHED, SYN_SENT/);
  });

  it('keeps every line within the width', () => {
    for (const s of Object.keys(TcpState) as StateName[]) for (const l of explainState(s, 80)) expect([...l].length, l).toBeLessThanOrEqual(80);
    for (const l of explainOverview(80)) expect([...l].length, l).toBeLessThanOrEqual(80);
    expect(explain(undefined)).toMatch(/^TCP states as the kernel defines them/);
  });
});

describe.skipIf(!built && !process.env.CI)('tcpdwell explain on the command line', () => {
  it('prints one state, exit 0', () => {
    const r = spawnSync(bin, ['explain', 'close-wait'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^CLOSE_WAIT \(ss: CLOSE-WAIT\)/);
  });

  it('an unknown state: one line, exit 2', () => {
    const r = spawnSync(bin, ['explain', 'NOPE'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it.each([
    [['top', '--interval', '0'], /not a duration/],
    [['top', '--port', '99999'], /not a port/],
    [['top', '--ring-bytes', '1000'], /power of two/],
    [['top', '--netns', 'no-such-netns-x'], /no such network namespace/],
    [['top', '--nats', 'nats://127.0.0.1:1', '--port', '80'], /with --nats, filter in the view/],
    [['top', '--host', 'web-1'], /give --nats too/],
    [['top', '--nats', 'not a url'], /give a URL like nats:\/\/host:4222/],
  ])('tcpdwell %s: one clear line, exit 2', (args, message) => {
    const r = spawnSync(bin, args as string[], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
  });
});
