/**
 * Per-socket kernel state kept across agent restarts: the maps that hold entry times and owners
 * (sk_state, tw_state) pinned in a bpffs directory, so a restarted agent re-attaches to them and
 * the dwells of sockets that lived across the restart stay exact. `tcpdwell uninstall` removes them.
 * (No native code here: `uninstall` and the command line's defaults need none.)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statfsSync } from 'node:fs';
import { EnvironmentError } from '../common/errors.js';
import { MapName } from './abi.js';

/** Where the agent keeps per-socket kernel state across restarts (see `tcpdwell uninstall`). */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/tcpdwell';

/** The maps that hold per-socket state worth keeping across agent restarts. */
export const PINNED_MAPS = [MapName.sk_state, MapName.tw_state] as const;
const BPF_FS_MAGIC = 0xcafe4a11;

const isBpffs = (p: string) => {
  try {
    return statfsSync(p).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
};

/** Makes sure dir is on a bpffs (mounting /sys/fs/bpf if it is not), and creates it. */
export function preparePinDir(dir: string): void {
  if (!isBpffs('/sys/fs/bpf') && dir.startsWith('/sys/fs/bpf')) {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'ignore' });
    } catch {
      throw new EnvironmentError('bpffs is not mounted at /sys/fs/bpf and mounting it failed: run mount -t bpf bpf /sys/fs/bpf');
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isBpffs(dir)) throw new EnvironmentError(`--pin-dir ${dir} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf, and use a directory below it)`);
}

/** Removes the pinned state (`tcpdwell uninstall`). Returns what it removed. */
export function removePinned(dir: string): string[] {
  // The pin directory is root's and 0700: to anyone else its maps do not "exist" (existsSync
  // says false on EACCES), which must not read as "nothing pinned".
  try {
    readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new EnvironmentError(`cannot see what is pinned in ${dir} (permission denied): run tcpdwell uninstall as root (e.g. sudo ./bin/tcpdwell uninstall)`, { cause: err });
    }
  }
  const removed: string[] = [];
  for (const name of PINNED_MAPS) {
    const p = `${dir}/${name}`;
    if (existsSync(p)) {
      rmSync(p);
      removed.push(p);
    }
  }
  try {
    rmdirSync(dir); // only if empty: something else may be pinned there
  } catch {
    // not empty, or absent
  }
  return removed;
}
