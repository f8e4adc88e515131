/**
 * Owners against real servers, as `ss -tanp` names them (the holder of the socket's file, by its
 * process name): nginx with a master and workers (keep-alive and not), started after the tracer
 * and before it; memcached (worker threads named mc-worker); a prefork server leaking CLOSE_WAIT
 * in its children; redis under redis-benchmark -k 0. Each server runs in the test's namespace.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeRecordList, type TcpEvent } from '../../src/decode/index.js';
import { Tracker } from '../../src/track/index.js';
import { Collector, kernelAvailable, TestNetns } from './helpers.js';

const PREFORK = fileURLToPath(new URL('./prefork.py', import.meta.url));
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const servers = ['nginx', 'memcached', 'redis-server', 'redis-benchmark'].filter((c) => !have(c));
if (kernelAvailable && servers.length && process.env.CI) throw new Error(`missing ${servers.join(', ')}: make deps installs nginx-light, memcached, redis-server, redis-tools`);
if (kernelAvailable && servers.length) console.warn(`\n!!! SKIPPING REAL-SERVER TESTS: ${servers.join(', ')} not installed (make deps installs them) !!!\n`);

interface SsSocket {
  state: string;
  local: string;
  peer: string;
  lport: number;
  pport: number;
  users: { comm: string; pid: number }[];
}

describe.skipIf(!kernelAvailable || servers.length > 0)('owners are the processes ss -p names, with real servers', () => {
  let netns: TestNetns;
  let col: Collector | null = null;
  let dir: string;
  const running: ChildProcess[] = [];

  beforeEach(() => {
    netns = new TestNetns();
    dir = mkdtempSync(join(tmpdir(), 'tcpdwell-servers-'));
  });
  afterEach(async () => {
    for (const c of running.splice(0)) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((resolve) => c.on('exit', resolve)); // not 'close': forked children may hold its pipes
      c.stdin?.end();
      c.kill('SIGTERM');
      await gone;
    }
    col?.close();
    col = null;
    netns.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  const inNs = (cmd: string, args: string[], opts: { stdout?: boolean } = {}) => {
    const c = spawn('ip', ['netns', 'exec', netns.name, cmd, ...args], { stdio: ['pipe', opts.stdout ? 'pipe' : 'ignore', 'inherit'] });
    running.push(c);
    return c;
  };
  const firstLine = (c: ChildProcess) => new Promise<string>((resolve) => c.stdout!.once('data', (d) => resolve(String(d))));

  /** `ss -Htanp` in the namespace, parsed: ends, state and every holder (comm, pid). */
  const ss = (): SsSocket[] =>
    execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htanp'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [state, , , local, peer] = l.split(/\s+/) as [string, string, string, string, string];
        const users = [...l.matchAll(/\("([^"]+)",pid=(\d+),fd=\d+\)/g)].map((m) => ({ comm: m[1]!, pid: Number(m[2]) }));
        return { state, local, peer, lport: Number(local.split(':').pop()), pport: Number(peer.split(':').pop()), users };
      });

  async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = f();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(25);
    }
  }
  const listening = (port: number) => until(`a listener on ${port} and its holder`, () => ss().find((s) => s.state === 'LISTEN' && s.lport === port && s.users.length > 0));

  /** nginx with a master and two workers on 127.0.0.1:port. */
  async function nginx(port: number, keepaliveS: number): Promise<{ master: number; workers: number[] }> {
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 2; pid ${dir}/nginx.pid; error_log ${dir}/error.log; events { worker_connections 64; }
       http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
              server { listen 127.0.0.1:${port}; keepalive_timeout ${keepaliveS}s; location / { return 200 "ok\\n"; } } }`,
    );
    inNs('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;']);
    const l = await listening(port);
    const pids = l.users.map((u) => u.pid).sort((a, b) => a - b);
    await until('nginx workers', () => ss().find((s) => s.state === 'LISTEN' && s.lport === port)!.users.length === 3);
    const all = ss().find((s) => s.state === 'LISTEN' && s.lport === port)!.users.map((u) => u.pid).sort((a, b) => a - b);
    return { master: Math.min(...pids, ...all), workers: all.filter((p) => p !== Math.min(...all)) };
  }

  /** A python client holding `n` keep-alive connections to port, each after one request; it exits on stdin EOF. */
  async function keepAliveClients(port: number, n: number): Promise<{ pid: number; stop: () => Promise<void> }> {
    const py = inNs(
      'python3',
      [
        '-c',
        `import http.client, json, os, sys
cs = []
for _ in range(${n}):
    c = http.client.HTTPConnection("127.0.0.1", ${port}); c.request("GET", "/"); c.getresponse().read(); cs.append(c)
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.read()`,
      ],
      { stdout: true },
    );
    const { pid } = JSON.parse(await firstLine(py)) as { pid: number };
    return { pid, stop: () => new Promise<void>((resolve) => (py.on('close', () => resolve()), py.stdin!.end())) };
  }

  const serverSide = (events: TcpEvent[], port: number) => events.filter((e) => e.sport === port && e.dport !== 0);

  it('nginx with keep-alive: from accept on, each connection is its worker\'s, as ss -p says (not the master\'s); the listener is the master\'s', async () => {
    const PORT = 8801;
    col = new Collector({ netns: [netns.ns.inode] });
    const { master, workers } = await nginx(PORT, 60);
    const clients = await keepAliveClients(PORT, 4);
    const held = ss().filter((s) => s.state === 'ESTAB' && s.lport === PORT);
    expect(held).toHaveLength(4);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'accept').length >= 4);
    const tracker = new Tracker({ clock: clockBoottimeNs });
    tracker.ingest(events);
    for (const s of held) {
      expect(s.users).toHaveLength(1);
      const worker = s.users[0]!;
      expect(workers).toContain(worker.pid);
      const accept = events.find((e) => e.type === 'accept' && e.dport === s.pport)!;
      expect(accept).toMatchObject({ ownerPid: worker.pid, ownerComm: 'nginx', sport: PORT });
      const row = tracker.stuck({ states: ['ESTABLISHED'], perState: 100 }).find((r) => r.sport === PORT && r.dport === s.pport)!;
      expect(row).toMatchObject({ ownerPid: worker.pid, ownerComm: 'nginx' });
    }
    // The client goes: each server end enters CLOSE_WAIT on the peer's FIN, in softirq — still the worker's.
    await clients.stop();
    const after = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition' && e.sport === PORT && e.oldState === 'ESTABLISHED').length >= 4);
    for (const e of after.filter((x) => x.type === 'transition' && x.sport === PORT && x.oldState === 'ESTABLISHED')) {
      expect(held.find((s) => s.pport === e.dport)!.users[0]!.pid).toBe(e.ownerPid);
    }
    const listen = after.find((e) => e.type === 'transition' && e.newState === 'LISTEN' && e.sport === PORT)!;
    expect(listen.ownerPid).toBe(master);
  });

  it('nginx without keep-alive: every transition after accept names the worker that accepted; the handshake, before any holder, its listener\'s', async () => {
    const PORT = 8802;
    col = new Collector({ netns: [netns.ns.inode] });
    const { master, workers } = await nginx(PORT, 0);
    execFileSync('ip', ['netns', 'exec', netns.name, 'python3', '-c', `import http.client\nfor _ in range(6):\n    c = http.client.HTTPConnection("127.0.0.1", ${PORT}); c.request("GET", "/"); c.getresponse().read(); c.close()`]);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition' && e.sport === PORT && e.newState === 'CLOSE').length >= 6);
    const bySocket = new Map<bigint, TcpEvent[]>();
    for (const e of serverSide(events, PORT)) bySocket.set(e.cookie, [...(bySocket.get(e.cookie) ?? []), e]);
    expect(bySocket.size).toBe(6);
    for (const evs of bySocket.values()) {
      const i = evs.findIndex((e) => e.type === 'accept');
      expect(i).toBeGreaterThan(0);
      const worker = evs[i]!.ownerPid!;
      expect(workers).toContain(worker);
      expect(evs.slice(0, i).every((e) => e.ownerPid === master)).toBe(true);
      expect(evs.slice(i).every((e) => e.ownerPid === worker && e.ownerComm === 'nginx')).toBe(true);
    }
  });

  it('nginx started before the tracer: the snapshot names each connection\'s worker and the listener\'s master, as ss -p does', async () => {
    const PORT = 8803;
    const { master } = await nginx(PORT, 60);
    const clients = await keepAliveClients(PORT, 3);
    const byEnds = new Map(ss().map((s) => [`${s.lport}|${s.pport}`, s]));
    col = new Collector({ netns: [netns.ns.inode] });
    const snap: TcpEvent[] = [];
    col.tracer.snapshotNamespaces([netns.ns], (_ns, records) => snap.push(...decodeRecordList(records, col!.stats)));
    const tracker = new Tracker({ clock: clockBoottimeNs });
    tracker.seed(netns.ns.inode, snap);
    const listener = snap.find((e) => e.newState === 'LISTEN' && e.sport === PORT)!;
    expect(listener).toMatchObject({ ownerPid: master, ownerComm: 'nginx' });
    const conns = snap.filter((e) => e.newState === 'ESTABLISHED');
    expect(conns).toHaveLength(6); // 3 client ends, 3 server ends
    for (const e of conns) {
      const s = byEnds.get(`${e.sport}|${e.dport}`)!;
      expect(s.users).toHaveLength(1);
      expect({ pid: e.ownerPid, comm: e.ownerComm }).toEqual({ pid: s.users[0]!.pid, comm: s.users[0]!.comm });
    }
    expect(conns.filter((e) => e.ownerPid === clients.pid && e.ownerComm === 'python3')).toHaveLength(3);
    for (const r of tracker.stuck({ states: ['ESTABLISHED'], perState: 100 })) expect(r.ownerPid).toBe(byEnds.get(`${r.sport}|${r.dport}`)!.users[0]!.pid);
  });

  it("memcached: its worker threads act (comm mc-worker), the owner is the process (memcached), as ps and ss -p name it", async () => {
    const PORT = 8804;
    col = new Collector({ netns: [netns.ns.inode] });
    const mc = inNs('memcached', ['-u', 'root', '-l', '127.0.0.1', '-p', String(PORT), '-t', '2', '-U', '0']);
    const l = await listening(PORT);
    expect(l.users[0]!.comm).toBe('memcached');
    execFileSync('ip', ['netns', 'exec', netns.name, 'python3', '-c', `import socket\nfor _ in range(4):\n    s = socket.create_connection(("127.0.0.1", ${PORT})); s.sendall(b"version\\r\\n"); s.recv(100); s.sendall(b"quit\\r\\n"); s.recv(100); s.close()`]);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition' && e.sport === PORT && e.newState === 'CLOSE').length >= 4);
    const mine = serverSide(events, PORT);
    expect(mine.filter((e) => e.type !== 'transition' || e.oldState !== 'LISTEN').every((e) => e.ownerPid === mc.pid || e.ownerComm === 'memcached')).toBe(true);
    expect(mine.every((e) => e.ownerComm === 'memcached')).toBe(true);
    // The closes are the worker threads' (memcached answers "quit" by closing in the thread that serves the connection).
    expect(mine.some((e) => e.actorIsOwner && e.comm === 'mc-worker' && e.ownerComm === 'memcached')).toBe(true);
  });

  it('a prefork server: the CLOSE_WAIT leak alert names the children holding the sockets (ss -p), not the parent that listened', async () => {
    const PORT = 8805;
    col = new Collector({ netns: [netns.ns.inode] });
    const py = inNs('python3', [PREFORK, String(PORT), '3'], { stdout: true });
    const { pid: parent, children } = JSON.parse(await firstLine(py)) as { pid: number; children: number[] };
    await listening(PORT);
    execFileSync('ip', ['netns', 'exec', netns.name, 'python3', '-c', `import socket\nfor _ in range(5):\n    s = socket.create_connection(("127.0.0.1", ${PORT})); s.sendall(b"x"); s.close()`]);
    const leaking = await until('5 CLOSE-WAIT sockets', () => {
      const cw = ss().filter((s) => s.state === 'CLOSE-WAIT' && s.lport === PORT);
      return cw.length === 5 && cw;
    });
    const holders = new Set(leaking.map((s) => s.users[0]!.pid));
    expect([...holders].every((p) => children.includes(p))).toBe(true);
    const tracker = new Tracker({ clock: clockBoottimeNs, thresholds: { closeWaitAgeNs: 200_000_000n, closeWaitMinSockets: 1 } });
    tracker.ingest(await col.waitFor((ev) => ev.filter((e) => e.newState === 'CLOSE_WAIT').length >= 5));
    await sleep(250);
    const alerts = tracker.evaluate().filter((a) => a.detector === 'close_wait_leak');
    expect(new Set(alerts.map((a) => a.ownerPid))).toEqual(holders);
    expect(alerts.every((a) => a.ownerPid !== parent && a.ownerComm === 'python3')).toBe(true);
    expect(alerts.reduce((n, a) => n + Number(a.labels.sockets), 0)).toBe(5);
  });

  it('redis under redis-benchmark -k 0 (a new connection per request): every connection from accept on is redis-server\'s', async () => {
    const PORT = 8806;
    col = new Collector({ netns: [netns.ns.inode] });
    const redis = inNs('redis-server', ['--port', String(PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no']);
    const l = await listening(PORT);
    expect(l.users[0]!.comm).toBe('redis-server');
    execFileSync('ip', ['netns', 'exec', netns.name, 'redis-benchmark', '-p', String(PORT), '-n', '200', '-c', '4', '-k', '0', '-t', 'ping', '-q'], { stdio: 'ignore' });
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'accept' && e.sport === PORT).length >= 200, 10_000);
    const accepts = events.filter((e) => e.type === 'accept' && e.sport === PORT);
    expect(accepts.every((e) => e.ownerComm === 'redis-server' && e.ownerPid === l.users[0]!.pid)).toBe(true);
    const cookies = new Set(accepts.map((e) => e.cookie));
    const after = events.filter((e) => e.type === 'transition' && cookies.has(e.cookie) && e.oldState !== 'LISTEN' && e.oldState !== 'SYN_RECV');
    expect(after.length).toBeGreaterThanOrEqual(200);
    expect(after.every((e) => e.ownerPid === l.users[0]!.pid && e.ownerComm === 'redis-server')).toBe(true);
    void redis;
  });
});
