/**
 * Helpers for tests that load the real kernel program. Each test makes its own network
 * namespace and deletes it. Without root or BTF they skip — loudly — on a developer laptop,
 * and fail under CI (CI=true), where they must run.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, onTestFinished } from 'vitest';
import { decodeRecords, decodeRingBatch, type DecodeStats, type TcpEvent } from '../../src/decode/index.js';
import { resolveNetns, type Netns } from '../../src/kernel/namespaces.js';
import { Tracer, DEFAULT_OBJECT_PATH, type TracerOptions } from '../../src/kernel/tracer.js';

export const WORKLOAD = fileURLToPath(new URL('./workload.mjs', import.meta.url));

function whyNoKernel(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'the kernel has no BTF';
  if (!existsSync(DEFAULT_OBJECT_PATH)) return `${DEFAULT_OBJECT_PATH} is not built (run make)`;
  return null;
}

const reason = whyNoKernel();
if (reason && process.env.CI) {
  throw new Error(`kernel tests must run in CI but cannot: ${reason}`);
}
if (reason) {
  console.warn(`\n!!! SKIPPING KERNEL TESTS: ${reason}. They run for real in CI; run 'sudo make test' to run them here. !!!\n`);
}
/** True when the kernel tests can run here. */
export const kernelAvailable = reason === null;

let counter = 0;

/** A fresh network namespace with loopback up, deleted when the test is done. */
export class TestNetns {
  readonly name = `tcpdwell-t${process.pid}-${++counter}`;
  readonly ns: Netns;
  private deleted = false;

  constructor() {
    execFileSync('ip', ['netns', 'add', this.name]);
    execFileSync('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
    this.ns = resolveNetns(this.name);
  }

  /**
   * The workload process: `ip netns exec NS node workload.mjs …`, started inside the cgroup v2
   * directory `cgroup` when given (the shell moves itself there before exec, so every socket
   * the workload opens carries that cgroup).
   */
  private spawnWorkload(scenario: string, host: string, port: number, arg: string | number | undefined, stdio: ('ignore' | 'pipe' | 'inherit')[], cgroup?: string) {
    const args = ['netns', 'exec', this.name, process.execPath, WORKLOAD, scenario, host, String(port)];
    if (arg !== undefined) args.push(String(arg));
    if (!cgroup) return spawn('ip', args, { stdio });
    return spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip "$@"', cgroup, ...args], { stdio });
  }

  /** Runs a workload scenario inside the namespace (and `cgroup`, a v2 directory); resolves with its JSON summary line. */
  run(scenario: string, host: string, port: number, arg?: string | number, cgroup?: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const child = this.spawnWorkload(scenario, host, port, arg, ['ignore', 'pipe', 'pipe'], cgroup);
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (err += d));
      child.on('close', (code) => {
        if (code !== 0) reject(new Error(`workload ${scenario} exited ${code}: ${err}`));
        else resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}'));
      });
    });
  }

  /** Starts a long-running scenario (in `cgroup`, when given); returns its summary and a function that ends it. */
  start(scenario: string, host: string, port: number, arg?: string | number, cgroup?: string) {
    const child = this.spawnWorkload(scenario, host, port, arg, ['pipe', 'pipe', 'inherit'], cgroup);
    const ready = new Promise<Record<string, unknown>>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] ?? '{}'));
      });
    });
    const stop = () =>
      new Promise<void>((resolve) => {
        child.on('close', () => resolve());
        child.stdin!.end();
      });
    return { ready, stop };
  }

  delete(): void {
    if (this.deleted) return;
    this.deleted = true;
    execFileSync('ip', ['netns', 'del', this.name]);
  }
}

/** A tracer filtered to one namespace, collecting decoded events. */
export class Collector {
  readonly events: TcpEvent[] = [];
  readonly stats: DecodeStats = { records: 0, malformed: 0 };
  readonly tracer: Tracer;
  private reader;

  constructor(opts: TracerOptions) {
    this.tracer = Tracer.open(opts);
    this.reader = this.tracer.readRing((batch) => decodeRingBatch(batch, (e) => this.events.push(e), this.stats));
  }

  snapshot(ns: Netns): TcpEvent[] {
    const out: TcpEvent[] = [];
    decodeRecords(this.tracer.snapshot(ns), (e) => out.push(e), this.stats);
    return out;
  }

  /** Reads everything the kernel wrote so far. */
  drain(): TcpEvent[] {
    this.reader.consume();
    return this.events;
  }

  /** Waits until pred holds over the events seen (polling the ring), or fails after timeoutMs. */
  async waitFor(pred: (events: TcpEvent[]) => boolean, timeoutMs = 5000): Promise<TcpEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.drain();
      if (pred(this.events)) return this.events;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms; saw ${this.events.length} events`);
      await sleep(20);
    }
  }

  close(): void {
    this.tracer.close();
  }
}

/** `ss -Htan` in the namespace, counted by state as ss names them. */
/** For each test of the describe block that calls it: a fresh namespace and a collector of its events, handed to `use`, closed and deleted after. */
export function eachTestInNamespace(use: (netns: TestNetns, col: Collector) => void): void {
  let netns: TestNetns | undefined;
  let col: Collector | undefined;
  beforeEach(() => {
    netns = new TestNetns();
    col = new Collector({ netns: [netns.ns.inode] });
    use(netns, col);
  });
  afterEach(() => {
    col?.close();
    netns?.delete();
  });
}

export function ssCounts(netns: TestNetns): Record<string, number> {
  const out: Record<string, number> = {};
  const text = execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htan'], { encoding: 'utf8' });
  for (const line of text.trim().split('\n')) {
    if (!line) continue;
    const state = line.split(/\s+/)[0]!;
    out[state] = (out[state] ?? 0) + 1;
  }
  return out;
}

/** The events of each socket, by cookie, in order. */
export function bySocket(events: TcpEvent[]): Map<bigint, TcpEvent[]> {
  const m = new Map<bigint, TcpEvent[]>();
  for (const e of events) {
    const list = m.get(e.cookie) ?? [];
    list.push(e);
    m.set(e.cookie, list);
  }
  return m;
}

/** "CLOSE->SYN_SENT, SYN_SENT->ESTABLISHED, ..." for a socket's transitions. */
export function sequence(events: TcpEvent[]): string[] {
  return events.filter((e) => e.type === 'transition').map((e) => `${e.oldState}->${e.newState}`);
}

/**
 * The kernel's own view of some tracepoints: a private tracefs instance (so it does not disturb
 * anyone else's tracing) with those events enabled, read back as text lines. Mounts tracefs at
 * /sys/kernel/tracing when it is not mounted. Close it to remove the instance.
 */
export class TraceInstance {
  static readonly ROOT = '/sys/kernel/tracing';
  readonly dir = `${TraceInstance.ROOT}/instances/tcpdwell-t${process.pid}-${++counter}`;

  constructor(private readonly events: string[]) {
    if (!existsSync(`${TraceInstance.ROOT}/instances`)) execFileSync('mount', ['-t', 'tracefs', 'tracefs', TraceInstance.ROOT]);
    mkdirSync(this.dir);
    for (const e of events) writeFileSync(`${this.dir}/events/${e}/enable`, '1');
  }

  /** Every event recorded so far, one line each (the header comments left out). */
  lines(): string[] {
    return readFileSync(`${this.dir}/trace`, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  }

  close(): void {
    for (const e of this.events) writeFileSync(`${this.dir}/events/${e}/enable`, '0');
    rmdirSync(this.dir);
  }

  /** An instance for the running test, removed when it finishes. */
  static forThisTest(events: string[]): TraceInstance {
    const t = new TraceInstance(events);
    onTestFinished(() => t.close());
    return t;
  }
}

/** A counter of /proc/net/snmp (e.g. Tcp OutRsts) in a namespace. */
export function snmpCounter(netns: TestNetns, group: string, name: string): number {
  const lines = execFileSync('ip', ['netns', 'exec', netns.name, 'cat', '/proc/net/snmp'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`${group}:`));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf(name)]);
}

/**
 * Events a connection makes under the workloads' client-first close (client-first, burst):
 * 5 client and 5 server-child transitions, the client's timewait start, and the server's
 * accept() (traced by root; a non-root agent cannot read tracefs and has one less). A
 * listener adds 2 (CLOSE→LISTEN, LISTEN→CLOSE).
 */
export const EVENTS_PER_CONNECTION = 12;
