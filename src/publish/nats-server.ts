/**
 * A local nats-server with JetStream: the embedded default of `tcpdwell run` (and what the
 * tests start, each on its own free loopback port with JetStream in a temp dir).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { EnvironmentError } from '../common/errors.js';

export interface LocalNatsOptions {
  /** JetStream store directory (created) */
  storeDir: string;
  /** port on the listen address; default: a free one */
  port?: number;
  /** address to listen on for clients (default 127.0.0.1) */
  host?: string;
  /** extra nats-server configuration text (accounts, users, tls ...) */
  config?: string;
  /** join a cluster: this node's name, the cluster's, its route port on 127.0.0.1, and the other nodes' route ports */
  cluster?: LocalClusterNode;
  /** the nats-server binary (default: natsServerPath()) */
  bin?: string;
}

export interface LocalClusterNode {
  serverName: string;
  clusterName: string;
  routePort: number;
  peerRoutePorts: number[];
}

/** nats-server 2.9 configuration for one node of a loopback cluster (JetStream needs server_name). */
export function clusterConfig(c: LocalClusterNode): string {
  const routes = c.peerRoutePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
  return `server_name: ${c.serverName}\ncluster {\n  name: ${c.clusterName}\n  listen: 127.0.0.1:${c.routePort}\n  routes: [${routes}]\n}\n`;
}

export interface LocalNats {
  url: string;
  port: number;
  storeDir: string;
  process: ChildProcess;
  stop(): Promise<void>;
  /** stop with SIGKILL (a crash), for fault tests */
  kill(): Promise<void>;
}

/** A free TCP port on host (default 127.0.0.1; the kernel picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The nats-server to run: $TCPDWELL_NATS_SERVER when set, else the system's. A cluster needs one
 * with the fix for nats-server #4320 (≥ 2.9.21 or 2.10; docs/operations.md); `make deps` puts
 * Debian trixie's 2.10.27 under .cache/ for the cluster tests (scripts/fetch-nats-server.sh).
 */
export function natsServerPath(): string {
  const own = process.env.TCPDWELL_NATS_SERVER;
  if (own) {
    if (spawnSync(own, ['--version']).status === 0) return own;
    throw new EnvironmentError(`TCPDWELL_NATS_SERVER=${own} does not run (${own} --version failed): give the path of a nats-server binary`);
  }
  for (const p of ['/usr/bin/nats-server', '/usr/sbin/nats-server', '/usr/local/bin/nats-server']) {
    if (spawnSync(p, ['--version']).status === 0) return p;
  }
  const r = spawnSync('nats-server', ['--version']);
  if (r.status === 0) return 'nats-server';
  throw new EnvironmentError('nats-server not found on PATH: install it (apt-get install nats-server, or make deps), or give --nats URL of a running server');
}

/** stop (SIGTERM) and kill (SIGKILL, a crash) of a server process, each resolving once it has exited. */
export function stoppers(child: ChildProcess, waitExit: () => Promise<void>): { stop(): Promise<void>; kill(): Promise<void> } {
  const end = (signal: NodeJS.Signals) => async () => {
    child.kill(signal);
    await waitExit();
  };
  return { stop: end('SIGTERM'), kill: end('SIGKILL') };
}

/** Starts nats-server and resolves once it accepts clients. */
export async function startLocalNats(opts: LocalNatsOptions): Promise<LocalNats> {
  const bin = opts.bin ?? natsServerPath();
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  mkdirSync(opts.storeDir, { recursive: true });
  const conf = join(opts.storeDir, 'nats-server.conf');
  writeFileSync(
    conf,
    `listen: ${host}:${port}\njetstream { store_dir: "${opts.storeDir}" }\n${opts.cluster ? clusterConfig(opts.cluster) : ''}${opts.config ?? ''}\n`,
  );
  // Its own process group: a Ctrl-C at the terminal reaches the agent, which drains its
  // publishes into this server before stopping it, rather than both at once.
  const child = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('Server is ready')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new EnvironmentError(`nats-server exited (${code}) before it was ready:\n${output.slice(-2000)}`)));
    setTimeout(() => reject(new EnvironmentError(`nats-server did not start within 10 s:\n${output.slice(-2000)}`)), 10_000).unref();
  });
  child.removeAllListeners('exit');
  child.stdout!.resume();
  child.stderr!.resume();
  const waitExit = () =>
    new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()))).then(() => {
      process.off('exit', killOnExit);
    });
  return {
    url: `nats://${host}:${port}`,
    port,
    storeDir: opts.storeDir,
    process: child,
    ...stoppers(child, waitExit),
  };
}
