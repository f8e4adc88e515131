/** Network namespaces: naming them the way `ip netns` does, and finding every one on the host. */
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { UsageError } from '../common/errors.js';

/** Where `ip netns add NAME` keeps its bind mounts. */
export const NETNS_RUN_DIR = '/run/netns';

/** A network namespace: its inode (what the kernel program reports) and a path that opens it. */
export interface Netns {
  inode: number;
  path: string;
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Every network namespace we can open: the named ones (/run/netns) and those of every
 * process (/proc/PID/ns/net), one entry per inode. The first path found wins.
 */
export function listNetns(procDir = '/proc', runDir = NETNS_RUN_DIR): Netns[] {
  const seen = new Map<number, string>();
  const add = (path: string) => {
    const ino = inodeOf(path);
    if (ino !== undefined && !seen.has(ino)) seen.set(ino, path);
  };
  add(`${procDir}/self/ns/net`);
  try {
    for (const name of readdirSync(runDir)) add(`${runDir}/${name}`);
  } catch {
    // no named namespaces
  }
  for (const entry of readdirSync(procDir)) if (/^\d+$/.test(entry)) add(`${procDir}/${entry}/ns/net`);
  return [...seen].map(([inode, path]) => ({ inode, path }));
}

/** statfs f_type of nsfs, the filesystem of /proc/PID/ns/* and of their bind mounts (include/uapi/linux/magic.h). */
const NSFS_MAGIC = 0x6e736673;

/**
 * What kind of namespace file `path` is: 'net', another kind ('mnt', 'uts', ...), or null when
 * it is no namespace file at all. /proc/PID/ns/X is a symlink reading "X:[inode]"; a bind
 * mount (what `ip netns add` makes) is a plain nsfs file, whose kind mountinfo's root column
 * names the same way. Without this, setns() fails with EINVAL deep inside the iterator.
 */
export function namespaceKind(path: string, mountinfo = '/proc/self/mountinfo'): string | null {
  try {
    if (statfsSync(path).type !== NSFS_MAGIC) return null;
    if (lstatSync(path).isSymbolicLink()) return /^(\w+):\[/.exec(readlinkSync(path))?.[1] ?? null;
    const real = realpathSync(path);
    for (const line of readFileSync(mountinfo, 'utf8').split('\n')) {
      const [, , , root, point] = line.split(' ');
      if (point === real) return /^(\w+):\[/.exec(root ?? '')?.[1] ?? null;
    }
    return 'net'; // nsfs, but not found as a mount of our own: let setns() decide
  } catch {
    return null;
  }
}

/**
 * Resolves a --netns value: a name as in `ip netns` (/run/netns/NAME), a path to a namespace
 * file (/proc/PID/ns/net), or an inode number. Throws UsageError saying what to give instead.
 * `needPath`: the caller walks the namespace's sockets (states), so an inode that no process
 * or name on this host opens is no use to it; a filter (trace, run) takes it as it is.
 */
export function resolveNetns(spec: string, runDir = NETNS_RUN_DIR, opts: { needPath?: boolean } = {}): Netns {
  const what = 'Give a name from `ip netns list`, a path such as /proc/PID/ns/net, or an inode number.';
  if (/^\d+$/.test(spec)) {
    const inode = Number(spec);
    const found = listNetns(undefined, runDir).find((n) => n.inode === inode);
    if (!found && opts.needPath) {
      throw new UsageError(`--netns ${spec}: no such network namespace (no process and no \`ip netns\` name has inode ${spec}). ${what}`);
    }
    // An inode we cannot open still filters correctly; only the snapshot needs a path.
    return found ?? { inode, path: '' };
  }
  const path = spec.includes('/') ? spec : `${runDir}/${spec}`;
  const inode = inodeOf(path);
  if (inode === undefined) {
    throw new UsageError(`--netns ${spec}: no such network namespace (${path} does not exist). ${what}`);
  }
  const kind = namespaceKind(path);
  if (kind !== 'net') {
    throw new UsageError(`--netns ${spec}: not a network namespace (${kind ? `a ${kind} namespace` : `${path} is not a namespace file`}). ${what}`);
  }
  return { inode, path };
}

/** The inode of this process's own network namespace (entering it needs no setns, no CAP_SYS_ADMIN). */
export const ownNetnsInode = (procDir = '/proc'): number => statSync(`${procDir}/self/ns/net`).ino;

/**
 * The namespaces a snapshot walk covers: every one on the host when none are given, else the
 * given ones, each with a path that opens it when one can be found (an inode given alone gets
 * the first path listNetns finds for it; without one it stays path '' and cannot be walked).
 */
export function namespacesToWalk(wanted: readonly Netns[] = []): Netns[] {
  if (wanted.length === 0) return listNetns();
  const all = wanted.some((n) => !n.path) ? listNetns() : [];
  return wanted.map((n) => (n.path ? n : (all.find((a) => a.inode === n.inode) ?? n)));
}
