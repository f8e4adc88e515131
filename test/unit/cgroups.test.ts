import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ContainerNames, MAX_CONTAINER_SERIES } from '../../src/agent/containers.js';
import { CgroupResolver, cgroupLabel, parseCgroupPath } from '../../src/kernel/cgroups.js';

const ID = '4f3c2a1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a';
const UID = '0b7e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f';

describe('cgroup paths name their container, pod or unit, as each runtime writes them', () => {
  it.each([
    ['docker, systemd driver', `/system.slice/docker-${ID}.scope`, { runtime: 'docker', containerId: ID, podUid: '', unit: `docker-${ID}.scope` }],
    ['docker, cgroupfs driver', `/docker/${ID}`, { runtime: 'docker', containerId: ID, podUid: '', unit: '' }],
    ['containerd CRI, systemd driver', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${ID}.scope`, { runtime: 'containerd', containerId: ID, podUid: UID }],
    ['containerd CRI, guaranteed pod', `/kubepods.slice/kubepods-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${ID}.scope`, { runtime: 'containerd', containerId: ID, podUid: UID }],
    ['CRI, cgroupfs driver', `/kubepods/besteffort/pod${UID}/${ID}`, { runtime: 'cri', containerId: ID, podUid: UID, unit: '' }],
    ['cri-o, systemd driver', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/crio-${ID}.scope`, { runtime: 'cri-o', containerId: ID, podUid: UID }],
    ['cri-o, its conmon is not the container', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/crio-conmon-${ID}.scope`, { runtime: 'systemd', containerId: '', podUid: UID }],
    ['podman, system', `/machine.slice/libpod-${ID}.scope`, { runtime: 'podman', containerId: ID }],
    ['podman, rootless', `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`, { runtime: 'podman', containerId: ID }],
    ['podman, a process nested in its container', `/machine.slice/libpod-${ID}.scope/container`, { runtime: 'podman', containerId: ID }],
    ['a systemd service', '/system.slice/nginx.service', { runtime: 'systemd', containerId: '', unit: 'nginx.service' }],
    ['a login session', '/user.slice/user-1000.slice/session-3.scope', { runtime: 'systemd', unit: 'session-3.scope' }],
    ['the root', '/', { runtime: '', containerId: '', podUid: '', unit: '' }],
    ['anything else', '/process_api/a5790b58bec2b25511c130e2d094be48', { runtime: '', containerId: '' }],
  ])('%s', (_what, path, want) => {
    expect(parseCgroupPath(path, 7n)).toMatchObject({ id: 7n, path, ...want });
  });

  it('labels a container by its short id, else by unit, else by path', () => {
    expect(cgroupLabel(parseCgroupPath(`/docker/${ID}`))).toBe(ID.slice(0, 12));
    expect(cgroupLabel(parseCgroupPath('/system.slice/nginx.service'))).toBe('nginx.service');
    expect(cgroupLabel(parseCgroupPath('/batch/job-7'))).toBe('/batch/job-7');
  });
});

describe('the metrics label set stays bounded', () => {
  it('the 50 containers with the most sockets by name, the rest summed as "other", unresolvable ids as "unknown"', () => {
    // A directory tree shaped like a cgroup hierarchy: the resolver only reads names and inodes.
    const root = mkdtempSync(join(tmpdir(), 'cgroups-'));
    try {
      const ids: number[] = [];
      for (let i = 0; i < 60; i++) {
        const dir = join(root, 'system.slice', `docker-${i.toString(16).padStart(2, '0').repeat(32)}.scope`);
        mkdirSync(dir, { recursive: true });
        ids.push(statSync(dir).ino);
      }
      const names = new ContainerNames(new CgroupResolver({ root }));
      const byCgroup = new Map<number, Record<string, number>>(ids.map((id, i) => [id, { ESTABLISHED: 100 - i, CLOSE_WAIT: 1 }]));
      byCgroup.set(0, { TIME_WAIT: 3 }); // timewait socks of a snapshot: no cgroup known
      const rows = names.sockets(byCgroup);
      expect(rows).toHaveLength(MAX_CONTAINER_SERIES + 1);
      expect(rows[0]).toEqual({ container: '00'.repeat(6), runtime: 'docker', podUid: '', counts: { ESTABLISHED: 100, CLOSE_WAIT: 1 } });
      // 10 containers and the unknown cgroup fall outside the top 50: summed.
      expect(rows.find((r) => r.container === 'other')!.counts).toEqual({ ESTABLISHED: 10 * 100 - (50 + 59) * 5, CLOSE_WAIT: 10, TIME_WAIT: 3 });
      expect(new Set(rows.map((r) => r.container)).size).toBe(rows.length);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
