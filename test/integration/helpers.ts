/** Real nats-server for integration tests: each test starts its own on a free loopback port. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { onTestFinished } from 'vitest';
import { startLocalNats, type LocalNats } from '../../src/publish/nats-server.js';
import { TestNetns } from '../kernel/helpers.js';
import { decodeTransitions, pb, type Header } from '../../src/publish/wire.js';
import type { TcpEvent } from '../../src/decode/index.js';

/**
 * The nats-server for clusters: one with the fix for the clustered expected-sequence race
 * (#4320; bookworm's 2.9.10 lacks it), which `make deps` unpacks under .cache/.
 */
export function clusterNatsServer(): string {
  const bin = fileURLToPath(new URL('../../.cache/nats-server-2.10.27/usr/sbin/nats-server', import.meta.url));
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run make deps (it fetches nats-server 2.10.27 from Debian trixie)`);
  return bin;
}

export interface TestNats extends LocalNats {
  /** restart on the same port and store (after stop/kill) */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startNats(config?: string): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-nats-'));
  let s = await startLocalNats({ storeDir: join(dir, 'js'), config });
  const t: TestNats = {
    get url() {
      return s.url;
    },
    get port() {
      return s.port;
    },
    get storeDir() {
      return s.storeDir;
    },
    get process() {
      return s.process;
    },
    stop: () => s.stop(),
    kill: () => s.kill(),
    restart: async () => {
      s = await startLocalNats({ storeDir: join(dir, 'js'), port: s.port, config });
    },
    cleanup: async () => {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

export interface StoredMessage {
  subject: string;
  kind: string;
  header: Header;
  data: Uint8Array;
}

/** Every message in the stream, in stream order, read with an ordered consumer. */
export async function readStream(url: string, stream = 'TCPDWELL', auth: { user?: string; pass?: string } = {}): Promise<StoredMessage[]> {
  const nc = await connect({ servers: url, ...auth });
  try {
    const js = jetstream(nc);
    const c = await js.consumers.get(stream);
    const out: StoredMessage[] = [];
    for (;;) {
      const batch = await c.fetch({ max_messages: 1000, expires: 1000 });
      let n = 0;
      for await (const m of batch) {
        n++;
        const kind = m.subject.split('.')[3]!;
        const type = { transitions: pb.TransitionBatch, summary: pb.Summary, snapshot: pb.Snapshot, dwell: pb.DwellBatch, alerts: pb.Alert }[kind];
        if (!type) throw new Error(`unexpected subject ${m.subject} in the stream`);
        const header = type.decode(m.data).header;
        out.push({ subject: m.subject, kind, header: header ?? {}, data: m.data });
      }
      if (n === 0) return out;
    }
  } finally {
    await nc.close();
  }
}

/** The events of all transition batches, in order. */
export function transitionEvents(msgs: StoredMessage[]): TcpEvent[] {
  return msgs.filter((m) => m.kind === 'transitions').flatMap((m) => decodeTransitions(m.data).events);
}

/**
 * How many events a test that expected `expected` can demand: that less one per gap the kernel
 * program flagged in what arrived. The kernel now and then runs no program at all for a
 * transition (seen in full-suite runs: 49 of one burst's 50 FIN_WAIT1→FIN_WAIT2 missing from the
 * agent and from an independent second tracer on the same namespace alike, each of the 49 counted
 * as a state gap by both; recursion misses, which are per program, do not explain it); the
 * program notices at the socket's next transition, flags that event (gap) and counts it
 * (state_gaps). Nothing the agent read may be missing, and every missing event must be one the
 * kernel's program flagged.
 */
export function expectedLessGaps(events: readonly TcpEvent[], expected: number): number {
  return expected - events.filter((e) => e.gap).length;
}

/** Sequence numbers per epoch: { epoch → seqs in arrival order }. */
export function seqsByEpoch(msgs: StoredMessage[]): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (const x of msgs) {
    const e = Number(x.header.epoch);
    m.set(e, [...(m.get(e) ?? []), Number(x.header.seq)]);
  }
  return m;
}

/** True when seqs are exactly 1..max, each once. */
export function contiguousOnce(seqs: number[]): boolean {
  const sorted = [...seqs].sort((a, b) => a - b);
  return sorted.every((s, i) => s === i + 1);
}

/** A command started and run until its stderr says `ready`; what it printed so far, on demand. */
export async function spawnUntil(cmd: string, args: string[], ready: string): Promise<{ child: ChildProcessWithoutNullStreams; out: () => string; err: () => string }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise<void>((resolve) => child.stderr.on('data', (d) => (err += d) && err.includes(ready) && resolve()));
  return { child, out: () => out, err: () => err };
}

/**
 * The service manager's end of sd_notify: a real AF_UNIX datagram socket (Python's: Node has no
 * unix datagram sockets) at a fresh path; each datagram received is one entry of `messages`.
 */
export async function startNotifySocket(): Promise<{ path: string; messages: string[]; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-notify-'));
  const path = join(dir, 'notify');
  const py = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print(json.dumps("bound"), flush=True)',
    'while True:',
    '    print(json.dumps(s.recv(8192).decode()), flush=True)',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', py, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m === 'bound') resolve();
        else messages.push(m);
      }
    });
  });
  return {
    path,
    messages,
    close: () => {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What an agent test needs: its own nats-server, network namespace and spool directory, all
 * removed when the test finishes (registered with onTestFinished).
 */
export async function agentFixture(): Promise<{ nats: TestNats; netns: TestNetns; spoolDir: string }> {
  const nats = await startNats();
  const netns = new TestNetns();
  const spoolDir = mkdtempSync(join(tmpdir(), 'tcpdwell-spool-'));
  onTestFinished(async () => {
    netns.delete();
    await nats.cleanup();
    rmSync(spoolDir, { recursive: true, force: true });
  });
  return { nats, netns, spoolDir };
}
