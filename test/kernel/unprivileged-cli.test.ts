/**
 * Commands run by a user without root: the first thing they say is what they need, not an
 * EACCES from whatever file they happened to touch first, and not a wrong "nothing there".
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { removePinned } from '../../src/kernel/pins.js';
import { kernelAvailable } from './helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));
const NOBODY = 65534;

/** The command as uid/gid nobody with no capabilities at all. */
function asNobody(...args: string[]) {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', bin, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    cwd: '/',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!kernelAvailable)('tcpdwell as a non-root user', () => {
  it.each([
    [['run', '--duration', '1']], // would start the embedded nats-server under var/ first
    [['run', '--duration', '1', '--nats', 'nats://127.0.0.1:1']], // would create the spool in /var/lib/tcpdwell first
  ])('%s says which privileges it needs before touching the spool or the embedded server', (args) => {
    const r = asNobody(...args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs root, or the capabilities CAP_BPF and CAP_PERFMON/);
    expect(r.stderr).not.toMatch(/EACCES|unexpected error/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  const pinDir = `/sys/fs/bpf/tcpdwell-unpriv-${process.pid}`;
  afterEach(() => {
    removePinned(pinDir);
    rmSync(pinDir, { recursive: true, force: true });
  });

  it("uninstall says it cannot see root's pinned state, and leaves it, rather than saying nothing is pinned", () => {
    // What `run` leaves: a 0700 root directory on bpffs holding the pinned per-socket maps.
    mkdirSync(pinDir, { mode: 0o700 });
    execFileSync('bpftool', ['map', 'create', `${pinDir}/sk_state`, 'type', 'hash', 'key', '8', 'value', '4', 'entries', '16', 'name', 'sk_state']);
    const r = asNobody('uninstall', '--pin-dir', pinDir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`cannot see what is pinned in ${pinDir}.*permission denied.*as root`));
    expect(r.stderr).not.toMatch(/nothing pinned/);
    expect(existsSync(`${pinDir}/sk_state`)).toBe(true);
    // Root removes it, and an empty or absent directory is "nothing pinned" for anyone.
    const root = spawnSync(bin, ['uninstall', '--pin-dir', pinDir], { encoding: 'utf8' });
    expect(root.status).toBe(0);
    expect(root.stderr).toMatch(`removed ${pinDir}/sk_state`);
    expect(asNobody('uninstall', '--pin-dir', pinDir).stderr).toMatch(`nothing pinned in ${pinDir}`);
  });
});
