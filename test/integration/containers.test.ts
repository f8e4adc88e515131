/**
 * Container attribution against real cgroups: directories of each runtime's naming made in the
 * cgroup v2 hierarchy (here /sys/fs/cgroup/unified), a real workload moved into each before it
 * opens a socket (echo PID > cgroup.procs), the real kernel program reporting the sockets'
 * cgroup ids, and a real agent and nats-server shipping the names to readers elsewhere.
 */
import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { CgroupResolver, findCgroup2Root } from '../../src/kernel/cgroups.js';
import { buildTimelines, readQueryInputs, renderTimeline } from '../../src/collect/query.js';
import { renderMessage } from '../../src/cli/commands/tail.js';
import { cgroupsById, decodeDwell, pb } from '../../src/publish/wire.js';
import { Collector, kernelAvailable, TestNetns } from '../kernel/helpers.js';
import { agentFixture, readStream } from './helpers.js';

const ROOT = findCgroup2Root();
const hex = (c: string) => c.repeat(64);
const UID = '0b7e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f';
const POD = `kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice`;

/** cgroup directories made under <v2 root>/tcpdwell-test-<pid>/, removed (deepest first) at the end. */
class TestCgroups {
  readonly base = `/tcpdwell-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly made: string[] = [];

  make(rel: string): { dir: string; path: string; id: bigint } {
    const parts = `${this.base}${rel}`.split('/').filter(Boolean);
    let cur = '';
    for (const p of parts) {
      cur += `/${p}`;
      try {
        mkdirSync(join(ROOT!, cur));
        this.made.push(cur);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    const dir = join(ROOT!, cur);
    return { dir, path: cur, id: BigInt(statSync(dir, { bigint: true }).ino) };
  }

  async remove(): Promise<void> {
    for (const d of [...this.made].reverse()) {
      // A workload that has just exited may still be leaving its cgroup: EBUSY for a moment.
      for (let i = 0; ; i++) {
        try {
          rmdirSync(join(ROOT!, d));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          if (i > 50) throw err;
          await sleep(100);
        }
      }
    }
  }
}

describe.skipIf(!kernelAvailable || !ROOT)('containers, named from real cgroups', () => {
  it("the sockets' cgroup ids are their cgroup directories' inodes, and each runtime's naming resolves to its container, pod or unit", async () => {
    const cg = new TestCgroups();
    const netns = new TestNetns();
    const collector = new Collector({ netns: [netns.ns.inode] });
    onTestFinished(async () => {
      collector.close();
      netns.delete();
      await cg.remove();
    });
    const cases = [
      { rel: `/system.slice/docker-${hex('a')}.scope`, want: { runtime: 'docker', containerId: hex('a'), podUid: '' } },
      { rel: `/docker/${hex('b')}`, want: { runtime: 'docker', containerId: hex('b') } },
      { rel: `/kubepods.slice/kubepods-burstable.slice/${POD}/cri-containerd-${hex('c')}.scope`, want: { runtime: 'containerd', containerId: hex('c'), podUid: UID } },
      { rel: `/kubepods/burstable/pod${UID}/${hex('d')}`, want: { runtime: 'cri', containerId: hex('d'), podUid: UID } },
      { rel: `/kubepods.slice/kubepods-burstable.slice/${POD}/crio-${hex('e')}.scope`, want: { runtime: 'cri-o', containerId: hex('e'), podUid: UID } },
      { rel: `/machine.slice/libpod-${hex('f')}.scope`, want: { runtime: 'podman', containerId: hex('f') } },
      { rel: '/system.slice/tcpdwell-test-web.service', want: { runtime: 'systemd', containerId: '', unit: 'tcpdwell-test-web.service' } },
    ];
    const made = cases.map((c) => ({ ...c, ...cg.make(c.rel) }));
    let port = 8901;
    const ports = new Map<number, (typeof made)[number]>();
    for (const c of made) {
      ports.set(port, c);
      await netns.run('client-first', '127.0.0.1', port++, undefined, c.dir);
    }
    await sleep(200);
    collector.drain();
    const resolver = new CgroupResolver({ maxEntries: 64 });
    for (const [p, c] of ports) {
      const events = collector.events.filter((e) => e.type === 'transition' && (e.sport === p || e.dport === p));
      expect(events.length, c.rel).toBeGreaterThanOrEqual(8);
      // What the kernel recorded for every socket of that workload is the directory's inode.
      expect(new Set(events.map((e) => e.cgroupId)), c.rel).toEqual(new Set([c.id]));
      expect(resolver.resolve(c.id), c.rel).toMatchObject({ id: c.id, path: c.path, ...c.want });
    }
    // Bounded: a cache of 3 keeps 3, and still answers for the others (a miss walks again).
    const small = new CgroupResolver({ maxEntries: 3, rescanMs: 0 });
    for (const c of made) expect(small.resolve(c.id)?.containerId).toBe(c.want.containerId);
    expect(small.size).toBeLessThanOrEqual(3);
    // A cgroup that is gone resolves to null, and does not walk again within the rescan interval.
    const gone = new CgroupResolver();
    expect(gone.resolve(999_999_999n)).toBeNull();
    const walks = gone.walks;
    expect(gone.resolve(999_999_999n)).toBeNull();
    expect(gone.walks).toBe(walks);
  });

  it('the agent ships the names: a dictionary in dwell batches and summaries, the owner\'s container in alerts, a bounded metrics label, and query and tail show them', async () => {
    const cg = new TestCgroups();
    onTestFinished(() => cg.remove());
    const { nats, netns, spoolDir } = await agentFixture();
    const c = cg.make(`/kubepods.slice/kubepods-burstable.slice/${POD}/cri-containerd-${hex('c')}.scope`);
    const agent = await Agent.start({
      host: 'k8s-node',
      connection: { servers: [nats.url] },
      spoolDir,
      flushIntervalMs: 50,
      summaryIntervalMs: 60_000,
      tracer: { netns: [netns.ns.inode] },
      metricsListen: '127.0.0.1:0',
      thresholds: { closeWaitAgeNs: 300_000_000n, closeWaitMinSockets: 1 },
    });
    let metrics = '';
    const hold = netns.start('mix', '127.0.0.1', 8941, '1,1,2', c.dir);
    try {
      await hold.ready;
      await sleep(700);
      agent.publishSummary(); // the leak alert fires here, while its owner is alive
      metrics = await (await fetch(agent.metricsUrl!)).text();
    } finally {
      await hold.stop();
    }
    await sleep(300);
    await agent.stop();

    const short = hex('c').slice(0, 12);
    expect(metrics).toContain(`tcpdwell_container_sockets{container="${short}",runtime="containerd",pod_uid="${UID}",state="CLOSE_WAIT"} 2`);
    const want = { id: c.id, path: c.path, runtime: 'containerd', containerId: hex('c'), podUid: UID, unit: `cri-containerd-${hex('c')}.scope` };

    const msgs = await readStream(nats.url);
    const dwell = msgs.filter((m) => m.kind === 'dwell').map((m) => decodeDwell(m.data));
    expect(dwell.some((d) => d.records.some((r) => r.cgroupId === c.id))).toBe(true);
    for (const d of dwell) for (const r of d.records) if (r.cgroupId === c.id) expect(d.cgroups.get(c.id)).toEqual(want);
    const summaries = msgs.filter((m) => m.kind === 'summary').map((m) => pb.Summary.decode(m.data));
    const held = summaries.find((s) => s.stuck.some((x) => x.state === 8));
    expect(cgroupsById(held!.cgroups).get(c.id)).toEqual(want);
    const leak = msgs.filter((m) => m.kind === 'alerts').map((m) => pb.Alert.decode(m.data)).find((a) => a.kind === 'close_wait_leak' && a.severity === 'firing');
    expect(leak!.cgroup).toMatchObject({ containerId: hex('c'), podUid: UID, runtime: 'containerd', path: c.path });

    // Readers elsewhere: query's timeline and tail's dwell lines name the container.
    const { inputs } = await readQueryInputs({ connection: { servers: [nats.url] }, host: 'k8s-node', sinceMs: Date.now() - 60_000, untilMs: Date.now(), contextMs: 60_000 });
    const timelines = buildTimelines(inputs, { host: 'k8s-node', sinceMs: Date.now() - 60_000, untilMs: Date.now(), port: 8941 });
    expect(timelines.length).toBeGreaterThan(0);
    for (const t of timelines) {
      expect(t.cgroup).toMatchObject({ containerId: hex('c'), podUid: UID });
      expect(renderTimeline(t).split('\n')[0]).toContain(`containerd ${short} pod ${UID}`);
    }
    const dwellMsg = msgs.find((m) => m.kind === 'dwell' && decodeDwell(m.data).records.some((r) => r.cgroupId === c.id))!;
    const line = renderMessage(dwellMsg.subject, dwellMsg.data, 'json').map((l) => JSON.parse(l)).find((r) => r.cgroupId === String(c.id));
    expect(line.cgroup).toMatchObject({ containerId: hex('c'), podUid: UID, id: String(c.id) });
    expect(renderMessage(dwellMsg.subject, dwellMsg.data, 'text').some((l) => l.includes(`[${short}]`))).toBe(true);
  });
});
