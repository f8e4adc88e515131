/**
 * `tcpdwell top` in a real terminal: tmux (a private server, a fixed 160x50 pane) runs a shell,
 * the shell runs top on a fresh namespace, and the test reads the screen with capture-pane.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { removePinned } from '../../src/kernel/pins.js';
import { LocalSource } from '../../src/top/local.js';
import { initialView } from '../../src/top/view.js';
import { Collector, kernelAvailable, ssCounts, TestNetns } from './helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const haveTmux = spawnSync('tmux', ['-V']).status === 0;
if (kernelAvailable && !haveTmux && process.env.CI) throw new Error('tmux is missing: apt-get install tmux (make deps)');

class Tmux {
  private readonly socket = `tcpdwell-test-${process.pid}`;
  private readonly t = (...args: string[]) => execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });

  constructor() {
    this.t('new-session', '-d', '-x', '160', '-y', '50', '-s', 'top', 'bash --norc --noprofile');
    this.t('set-option', '-g', 'status', 'off');
  }
  type(text: string) {
    this.t('send-keys', '-t', 'top', '-l', text);
  }
  key(name: string) {
    this.t('send-keys', '-t', 'top', name);
  }
  screen(): string[] {
    return this.t('capture-pane', '-p', '-t', 'top').split('\n');
  }
  /** The screen with its attributes, as tmux redraws them (SGR escape sequences). */
  styled(): string[] {
    return this.t('capture-pane', '-p', '-e', '-t', 'top').split('\n');
  }
  alternateOn(): boolean {
    return this.t('display-message', '-p', '-t', 'top', '#{alternate_on}').trim() === '1';
  }
  async waitFor(pred: (lines: string[]) => boolean, what: string, timeoutMs = 8000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      if (pred(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; screen:\n${s.join('\n')}`);
      await sleep(100);
    }
  }
  kill() {
    try {
      this.t('kill-server');
    } catch {
      // already gone
    }
  }
}

/** The state table on screen: ss name → count (rows with a count). */
function screenCounts(lines: string[]): Record<string, number> {
  const start = lines.findIndex((l) => l.startsWith('STATE ') && l.includes('COUNT'));
  const out: Record<string, number> = {};
  if (start < 0) return out;
  for (const l of lines.slice(start + 1)) {
    const m = /^(\S+)\s+(\S+)\s+(\d+)\b/.exec(l);
    if (!m) break;
    if (Number(m[3]) > 0) out[m[2]!] = Number(m[3]);
  }
  return out;
}
const same = (a: Record<string, number>, b: Record<string, number>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
const rowNames = (lines: string[]) => {
  const start = lines.findIndex((l) => l.startsWith('STATE ') && l.includes('COUNT'));
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    const m = /^(\S+)\s+\S+\s+\d+\b/.exec(l);
    if (!m) break;
    out.push(m[1]!);
  }
  return out;
};

describe.skipIf(!kernelAvailable || !haveTmux)('tcpdwell top in a terminal', () => {
  it('shows the counts ss shows, sorts and filters on keys, and gives the terminal back on q', async () => {
    const netns = new TestNetns();
    const tmux = new Tmux();
    let hold: ReturnType<TestNetns['start']> | undefined;
    try {
      tmux.type(`echo shell-before-top; ${bin} top --netns ${netns.name}; echo "top-exit=$?"`);
      tmux.key('Enter');
      await tmux.waitFor((s) => s[0]!.startsWith('tcpdwell top'), 'top to start');
      expect(tmux.alternateOn()).toBe(true);
      // The workload starts after top, so top sees each socket's transitions and knows its owner.
      hold = netns.start('mix', '127.0.0.1', 8611, '2,3,2');
      await hold.ready;
      const want = ssCounts(netns);
      expect(want).toMatchObject({ LISTEN: 1, ESTAB: 4, 'TIME-WAIT': 3, 'CLOSE-WAIT': 2, 'FIN-WAIT-2': 2 });
      let screen = await tmux.waitFor((s) => same(screenCounts(s), want), `counts equal to ss ${JSON.stringify(want)}`);
      expect(screenCounts(screen)).toEqual(want);
      expect(screen.find((l) => l.startsWith('total'))).toMatch(/\s12$/);
      // the oldest sockets carry their owner
      expect(screen.some((l) => l.startsWith('CLOSE_WAIT') && l.includes('127.0.0.1:8611') && /node\/\d+/.test(l))).toBe(true);

      // s: sort by state (the kernel's order) instead of by count
      expect(rowNames(screen)[0]).toBe('ESTABLISHED');
      tmux.key('s');
      screen = await tmux.waitFor((s) => s[1]!.startsWith('sort: state'), 'sort by state');
      const names = rowNames(screen);
      expect(names.indexOf('FIN_WAIT2')).toBeLessThan(names.indexOf('TIME_WAIT'));
      expect(names.indexOf('TIME_WAIT')).toBeLessThan(names.indexOf('CLOSE_WAIT'));
      expect(names.indexOf('CLOSE_WAIT')).toBeLessThan(names.indexOf('LISTEN'));

      // p: a port nobody uses leaves nothing; c: the owner's name keeps everything
      tmux.type('p9');
      tmux.key('Enter');
      screen = await tmux.waitFor((s) => s[1]!.includes('port=9 '), 'port filter');
      expect(screenCounts(screen)).toEqual({});
      tmux.type('x');
      tmux.type('cnode');
      tmux.key('Enter');
      screen = await tmux.waitFor((s) => s[1]!.includes('port=all process=node') && Object.keys(screenCounts(s)).length > 0, 'process filter');
      expect(screenCounts(screen)).toEqual(want);
      tmux.type('cnosuchprocess');
      tmux.key('Enter');
      screen = await tmux.waitFor((s) => s[1]!.includes('process=nosuchprocess'), 'process filter');
      expect(screenCounts(screen)).toEqual({});

      // q: top exits 0 and the shell's screen is back
      tmux.type('q');
      screen = await tmux.waitFor((s) => s.some((l) => l.startsWith('top-exit=')), 'top to exit');
      expect(screen.find((l) => l.startsWith('top-exit='))).toBe('top-exit=0');
      expect(screen.some((l) => l === 'shell-before-top')).toBe(true);
      expect(screen.some((l) => l.startsWith('tcpdwell top'))).toBe(false);
      expect(tmux.alternateOn()).toBe(false);
    } finally {
      tmux.kill();
      await hold?.stop();
      netns.delete();
    }
  });

  it('NO_COLOR: the same screen with bold, underline and reverse video but no colour', async () => {
    const netns = new TestNetns();
    const tmux = new Tmux();
    try {
      // A message in the alert style (bold red) on demand: a port filter that is not a port.
      const messageLine = async (env: string) => {
        tmux.type(`${env} ${bin} top --netns ${netns.name}`);
        tmux.key('Enter');
        await tmux.waitFor((s) => s[0]!.startsWith('tcpdwell top'), 'top to start');
        tmux.type('pxyz');
        tmux.key('Enter');
        await tmux.waitFor((s) => s.some((l) => l.includes("'xyz' is not a port")), 'the message');
        const styled = tmux.styled();
        tmux.type('q');
        await tmux.waitFor((s) => !s[0]!.startsWith('tcpdwell top'), 'top to exit');
        return { message: styled.find((l) => l.includes("'xyz' is not a port"))!, header: styled.find((l) => l.includes('tcpdwell top'))! };
      };
      const colour = await messageLine('');
      const plain = await messageLine('NO_COLOR=1');
      // no foreground colour at all (30–38; 39 is tmux resetting to the default)
      const colours = (l: string) => [...l.matchAll(/\x1b\[([0-9;]*)m/g)].flatMap((m) => m[1]!.split(';')).filter((p) => /^3[0-8]$/.test(p));
      expect(colours(colour.message)).toContain('31');
      expect(colours(plain.message)).toEqual([]);
      expect(plain.message).toMatch(/\x1b\[[0-9;]*1[;m]/); // still bold
      expect(plain.header).toMatch(/\x1b\[[0-9;]*7[;m]/); // still reverse video
    } finally {
      tmux.kill();
      netns.delete();
    }
  });
});

describe.skipIf(!kernelAvailable)('top started after the agent', () => {
  const pinDir = `/sys/fs/bpf/tcpdwell-top-${process.pid}`;
  afterEach(() => removePinned(pinDir));

  it("shows the real ages and owners of sockets older than itself, from the agent's pinned state", async () => {
    const netns = new TestNetns();
    // The agent: a tracer keeping its per-socket state pinned, as `run` does.
    const agent = new Collector({ netns: [netns.ns.inode], pinDir });
    let hold: ReturnType<TestNetns['start']> | undefined;
    const opened: LocalSource[] = [];
    try {
      hold = netns.start('mix', '127.0.0.1', 8621, '1,1,2');
      const w = await hold.ready;
      await sleep(1200);
      const view = { ...initialView({ host: null }) };
      const oldest = (src: LocalSource, state: string) => src.tick(Date.now(), view).hosts[0]!.stuck.filter((s) => s.state === state);

      const top = LocalSource.open({ netns: [netns.ns], peerPinDir: pinDir });
      opened.push(top);
      const cw = oldest(top, 'CLOSE_WAIT');
      expect(cw).toHaveLength(2);
      for (const s of cw) {
        expect(s).toMatchObject({ ownerPid: w.pid, ownerComm: 'node', ageIsLowerBound: false });
        expect(s.ageNs).toBeGreaterThanOrEqual(1_200_000_000n);
      }
      const tw = oldest(top, 'TIME_WAIT');
      expect(tw).toHaveLength(1);
      expect(tw[0]).toMatchObject({ ownerPid: w.pid, ageIsLowerBound: false });
      expect(tw[0]!.ageNs).toBeGreaterThanOrEqual(1_200_000_000n);

      // Without the agent's pins the same sockets' ages are only lower bounds, counted from top's start.
      const blind = LocalSource.open({ netns: [netns.ns] });
      opened.push(blind);
      expect(oldest(blind, 'CLOSE_WAIT').every((s) => s.ageIsLowerBound && s.ageNs < 1_000_000_000n)).toBe(true);

      // trace's snapshot lines read the same pins: exact entry times, and the owner.
      const r = spawnSync(bin, ['trace', '--netns', netns.name, '--agent-pin-dir', pinDir, '--format', 'json', '--duration', '0.2'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const snap = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'snapshot' && e.state === 'CLOSE_WAIT');
      expect(snap).toHaveLength(2);
      for (const e of snap) expect(e).toMatchObject({ ownerPid: w.pid, ownerComm: 'node', enteredNs: expect.any(String) });
    } finally {
      for (const s of opened) s.close();
      agent.close();
      await hold?.stop();
      netns.delete();
    }
  });
});
