/**
 * A real clickhouse-server (Debian's package) for tests: started from a config of our own in a
 * temp dir, on free loopback ports, and stopped afterwards.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, stoppers } from '../../src/publish/nats-server.js';

export const clickHouseAvailable = spawnSync('sh', ['-c', 'command -v clickhouse-server || test -x /usr/sbin/clickhouse-server']).status === 0;

export interface TestClickHouse {
  /** http://127.0.0.1:PORT */
  url: string;
  /** --store value for database `db` */
  spec(db?: string): string;
  process: ChildProcess;
  stop(): Promise<void>;
  /** SIGKILL, for outage tests; start() again brings it back on the same ports and data */
  kill(): Promise<void>;
  start(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startClickHouse(): Promise<TestClickHouse> {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-clickhouse-'));
  for (const d of ['data', 'tmp', 'log']) mkdirSync(join(dir, d));
  const [http, tcp] = [await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'config.xml'),
    `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${http}</http_port>
  <tcp_port>${tcp}</tcp_port>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`,
  );
  writeFileSync(
    join(dir, 'users.xml'),
    `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`,
  );
  const url = `http://127.0.0.1:${http}`;
  let child: ChildProcess;
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const start = async () => {
    child = spawn('clickhouse-server', [`--config-file=${dir}/config.xml`], { stdio: 'ignore', cwd: dir });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const ok = await fetch(`${url}/ping`).then((r) => r.ok, () => false);
      if (ok) return;
      if (exited() || Date.now() > deadline) throw new Error(`clickhouse-server did not start (see ${dir}/log/error.log)`);
      await sleep(50);
    }
  };
  const waitExit = () => new Promise<void>((resolve) => (exited() ? resolve() : child.once('exit', () => resolve())));
  await start();
  const t: TestClickHouse = {
    url,
    spec: (db = 'tcpdwell') => `clickhouse://127.0.0.1:${http}/${db}`,
    get process() {
      return child;
    },
    // child changes on start(): the stoppers are made for the one running now.
    stop: () => stoppers(child, waitExit).stop(),
    kill: () => stoppers(child, waitExit).kill(),
    start,
    cleanup: async () => {
      // Its data goes with the directory: no need to wait for a clean shutdown (seconds).
      if (!exited()) {
        child.kill('SIGKILL');
        await waitExit();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
