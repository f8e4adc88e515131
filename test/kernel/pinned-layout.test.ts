/**
 * Restarting with a version whose pinned per-socket maps have another layout: the tracer drops
 * the old pins (one log line), pins maps of its own layout, and traces as usual. A pin that
 * does fit is reused without a word.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removePinned } from '../../src/kernel/pins.js';
import { Collector, kernelAvailable, sequence, bySocket, TestNetns } from './helpers.js';

interface MapInfo {
  id: number;
  type: string;
  name: string;
  bytes_key: number;
  bytes_value: number;
  max_entries: number;
}
const pinnedMap = (path: string): MapInfo => JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', path], { encoding: 'utf8' }));

describe.skipIf(!kernelAvailable)('pinned state of another layout', () => {
  const pinDir = `/sys/fs/bpf/tcpdwell-layout-${process.pid}`;
  let netns: TestNetns;
  let col: Collector | null = null;

  beforeEach(() => {
    netns = new TestNetns();
    removePinned(pinDir);
    execFileSync('mkdir', ['-p', pinDir]);
  });
  afterEach(() => {
    col?.close();
    col = null;
    netns?.delete();
    removePinned(pinDir);
  });

  it('is discarded with one log line, replaced by maps of this layout, and tracing works; a fitting pin is then reused silently', async () => {
    // What an older (or newer) version might have left: same names, other types and sizes.
    execFileSync('bpftool', ['map', 'create', `${pinDir}/sk_state`, 'type', 'hash', 'key', '8', 'value', '4', 'entries', '16', 'name', 'sk_state']);
    execFileSync('bpftool', ['map', 'create', `${pinDir}/tw_state`, 'type', 'lru_hash', 'key', '8', 'value', '24', 'entries', '1024', 'name', 'tw_state']);
    const oldIds = [pinnedMap(`${pinDir}/sk_state`).id, pinnedMap(`${pinDir}/tw_state`).id];

    const lines: string[] = [];
    col = new Collector({ netns: [netns.ns.inode], pinDir, log: (l) => lines.push(l) });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^pinned state in ${pinDir} does not fit this version \\(${pinDir}/(sk_state|tw_state)\\): discarded`));

    // Now pinned: this program's maps (struct sk_info is 48 bytes, struct tw_info 40).
    const sk = pinnedMap(`${pinDir}/sk_state`);
    const tw = pinnedMap(`${pinDir}/tw_state`);
    expect({ type: sk.type, key: sk.bytes_key, value: sk.bytes_value }).toEqual({ type: 'sk_storage', key: 4, value: 48 });
    expect({ type: tw.type, key: tw.bytes_key, value: tw.bytes_value, entries: tw.max_entries }).toEqual({ type: 'lru_hash', key: 8, value: 40, entries: 131072 });
    expect(oldIds).not.toContain(sk.id);
    expect(oldIds).not.toContain(tw.id);

    // And it traces: a whole connection, with exact dwells (the entry times come from sk_state).
    await netns.run('client-first', '127.0.0.1', 8091);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition').length >= 12 && ev.some((e) => e.type === 'timewait_start'));
    const client = [...bySocket(events).values()].find((s) => sequence(s)[0] === 'CLOSE->SYN_SENT')!;
    expect(sequence(client)).toEqual(['CLOSE->SYN_SENT', 'SYN_SENT->ESTABLISHED', 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE']);
    expect(client.filter((e) => e.type === 'transition' && e.oldState !== 'CLOSE').every((e) => e.dwellNs !== null && e.dwellNs > 0n)).toBe(true);
    col.close();

    // Started again: the pins fit now and are reused as they are.
    lines.length = 0;
    col = new Collector({ netns: [netns.ns.inode], pinDir, log: (l) => lines.push(l) });
    expect(lines).toEqual([]);
    expect(pinnedMap(`${pinDir}/sk_state`).id).toBe(sk.id);
    expect(pinnedMap(`${pinDir}/tw_state`).id).toBe(tw.id);
  });

  it("another tracer's pins of another layout are not read, and left as they are", () => {
    execFileSync('bpftool', ['map', 'create', `${pinDir}/sk_state`, 'type', 'hash', 'key', '8', 'value', '4', 'entries', '16', 'name', 'sk_state']);
    const id = pinnedMap(`${pinDir}/sk_state`).id;
    const lines: string[] = [];
    col = new Collector({ netns: [netns.ns.inode], peerPinDir: pinDir, log: (l) => lines.push(l) });
    expect(lines).toEqual([`the agent's pinned state in ${pinDir} does not fit this version (${pinDir}/sk_state): not read (ages of sockets older than this command are lower bounds)`]);
    expect(pinnedMap(`${pinDir}/sk_state`).id).toBe(id);
  });
});
