/**
 * Which container a socket belongs to. Every record carries the socket's cgroup v2 id
 * (`sk->sk_cgrp_data`, bpf/tcpdwell.bpf.c), which on 64-bit kernels is the inode number of the
 * cgroup's directory in the v2 hierarchy (kernfs: `kernfs_id_ino`). So id → path is a walk of
 * that hierarchy (mounted at /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts), and
 * path → container is a matter of the names each runtime gives its cgroups:
 *
 * | runtime (cgroup driver)         | leaf                                          | pod (Kubernetes)                              |
 * |---------------------------------|-----------------------------------------------|-----------------------------------------------|
 * | docker (systemd / cgroupfs)     | docker-<64 hex>.scope / docker/<64 hex>        |                                               |
 * | containerd CRI (systemd/cgroupfs)| cri-containerd-<64 hex>.scope / <64 hex>     | kubepods-<qos>-pod<uid, _ for ->.slice / pod<uid> |
 * | cri-o (systemd / cgroupfs)      | crio-<64 hex>.scope / crio-<64 hex>            | the same                                      |
 * | podman (systemd / cgroupfs)     | libpod-<64 hex>.scope / libpod-<64 hex>        |                                               |
 * | systemd units                   | <name>.service, <name>.scope                   |                                               |
 *
 * Reading the hierarchy needs no privilege (the agent has dropped its capabilities by then).
 * The cache is bounded; a miss walks the hierarchy again, at most once per RESCAN_MS.
 */
import { readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** What a cgroup names, as the agent publishes it (proto CgroupInfo). */
export interface CgroupInfo {
  /** the cgroup v2 id (= the directory's inode) */
  id: bigint;
  /** relative to the v2 root, e.g. /system.slice/docker-4f…e1.scope */
  path: string;
  /** docker, containerd, cri-o, podman, systemd; '' when no runtime's naming is recognised */
  runtime: string;
  /** the container id (64 hex) for a container runtime */
  containerId: string;
  /** the Kubernetes pod UID (with dashes) for a pod's containers */
  podUid: string;
  /** the systemd unit the cgroup is, or lies in, e.g. nginx.service, docker-4f….scope */
  unit: string;
}

const HEX64 = '[0-9a-f]{64}';
/** Leaf names of containers: [runtime, pattern with the id as group 1]. Order matters: most specific first. */
const CONTAINER_LEAVES: [string, RegExp][] = [
  ['containerd', new RegExp(`^cri-containerd-(${HEX64})\\.scope$`)],
  ['cri-o', new RegExp(`^crio-(${HEX64})\\.scope$`)],
  ['cri-o', new RegExp(`^crio-(${HEX64})$`)],
  ['docker', new RegExp(`^docker-(${HEX64})\\.scope$`)],
  ['podman', new RegExp(`^libpod-(${HEX64})(?:\\.scope)?$`)],
];
/** kubepods-burstable-pod0a1b…_…slice (systemd driver, _ for -) or pod0a1b-… (cgroupfs driver). */
const POD = /^(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const BARE_ID = new RegExp(`^(${HEX64})$`);
const UNIT = /\.(service|scope)$/;

/** Names what a cgroup path is: runtime, container id, pod UID, systemd unit. Pure. */
export function parseCgroupPath(path: string, id = 0n): CgroupInfo {
  const parts = path.split('/').filter(Boolean);
  const info: CgroupInfo = { id, path: path || '/', runtime: '', containerId: '', podUid: '', unit: '' };
  for (const p of parts) {
    const pod = POD.exec(p);
    if (pod) info.podUid = pod[1]!.replace(/_/g, '-');
    if (UNIT.test(p)) info.unit = p;
  }
  // The container is the deepest segment that names one (crio-conmon-… and the like are not).
  for (let i = parts.length - 1; i >= 0 && !info.containerId; i--) {
    const p = parts[i]!;
    for (const [runtime, re] of CONTAINER_LEAVES) {
      const m = re.exec(p);
      if (m) {
        info.runtime = runtime;
        info.containerId = m[1]!;
        break;
      }
    }
    if (info.containerId) break;
    const bare = BARE_ID.exec(p);
    if (bare) {
      // cgroupfs drivers: /docker/<id>, /kubepods/<qos>/pod<uid>/<id> (containerd or cri-o: the
      // name does not say which; CRI it is).
      info.containerId = bare[1]!;
      info.runtime = parts[i - 1] === 'docker' ? 'docker' : info.podUid ? 'cri' : '';
    }
  }
  if (!info.containerId && info.unit) info.runtime = 'systemd';
  return info;
}

/** A short name for people and metric labels: the container id's first 12 hex, else the unit, else the path. */
export function cgroupLabel(c: Pick<CgroupInfo, 'containerId' | 'unit' | 'path'>): string {
  return c.containerId ? c.containerId.slice(0, 12) : c.unit || c.path;
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** Where cgroup v2 is mounted: /sys/fs/cgroup (unified), /sys/fs/cgroup/unified (hybrid), or null. */
export function findCgroup2Root(candidates = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']): string | null {
  for (const c of candidates) {
    try {
      if (statfsSync(c).type === CGROUP2_SUPER_MAGIC) return c;
    } catch {
      // not mounted here
    }
  }
  return null;
}

export interface CgroupResolverOptions {
  /** the v2 hierarchy (default: found) */
  root?: string | null;
  /** cgroups kept (default 4096); the least recently used go first */
  maxEntries?: number;
  /** a miss walks the hierarchy again at most this often (default 2 s) */
  rescanMs?: number;
  now?: () => number;
}

/**
 * cgroup id → CgroupInfo, from the v2 hierarchy, cached (bounded, least recently used out).
 * A cgroup created after the last walk is found by the next one; an id no walk finds (the
 * cgroup is gone) resolves to null until the walk after next, so that lookups of dead ids do
 * not walk at every call.
 */
export class CgroupResolver {
  readonly root: string | null;
  private readonly cache = new Map<bigint, CgroupInfo | null>();
  private readonly max: number;
  private readonly rescanMs: number;
  private readonly now: () => number;
  private lastWalkMs = -Infinity;
  /** walks of the hierarchy so far (for tests and status) */
  walks = 0;

  constructor(o: CgroupResolverOptions = {}) {
    this.root = o.root === undefined ? findCgroup2Root() : o.root;
    this.max = o.maxEntries ?? 4096;
    this.rescanMs = o.rescanMs ?? 2000;
    this.now = o.now ?? Date.now;
  }

  /** The cgroup of this id, or null (0, unknown, gone, or no cgroup v2 here). */
  resolve(id: bigint): CgroupInfo | null {
    if (id === 0n || !this.root) return null;
    const hit = this.cache.get(id);
    if (hit) {
      this.put(id, hit); // most recently used last
      return hit;
    }
    // Not seen yet, or not found by the last walk: walk again, if the last walk is old enough.
    if (this.now() - this.lastWalkMs >= this.rescanMs) this.walk(id);
    const found = this.cache.get(id) ?? null;
    this.put(id, found); // a miss is remembered too, until the next walk
    return found;
  }

  /** The cgroup of a process (its v2 line in /proc/PID/cgroup), or null. */
  ofPid(pid: number): CgroupInfo | null {
    if (!this.root || !(pid > 0)) return null;
    let path: string;
    try {
      path = /^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1] ?? '';
    } catch {
      return null;
    }
    if (!path) return null;
    try {
      const id = BigInt(statSync(join(this.root, path), { bigint: true }).ino);
      const info = parseCgroupPath(path, id);
      this.put(id, info);
      return info;
    } catch {
      return null;
    }
  }

  private put(id: bigint, info: CgroupInfo | null): void {
    this.cache.delete(id);
    this.cache.set(id, info);
    while (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value!);
  }

  /**
   * Indexes the hierarchy: every directory's inode → its path. Entries already cached stay
   * (and are refreshed); new ones are added while there is room, the one asked for first.
   */
  private walk(wanted: bigint): void {
    this.walks++;
    this.lastWalkMs = this.now();
    const seen: CgroupInfo[] = [];
    const visit = (rel: string) => {
      let entries;
      try {
        entries = readdirSync(join(this.root!, rel), { withFileTypes: true });
      } catch {
        return; // removed meanwhile
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue;
        const child = `${rel}/${e.name}`;
        try {
          const ino = BigInt(statSync(join(this.root!, child), { bigint: true }).ino);
          if (ino === wanted) this.put(ino, parseCgroupPath(child, ino));
          else if (this.cache.has(ino) || this.cache.size < this.max) seen.push(parseCgroupPath(child, ino));
        } catch {
          continue;
        }
        visit(child);
      }
    };
    try {
      const rootIno = BigInt(statSync(this.root!, { bigint: true }).ino);
      seen.push(parseCgroupPath('/', rootIno));
      if (rootIno === wanted) this.put(rootIno, seen[0]!);
    } catch {
      return;
    }
    visit('');
    for (const c of seen) if (this.cache.has(c.id) || this.cache.size < this.max) this.put(c.id, c);
  }

  get size(): number {
    return this.cache.size;
  }
}
