/**
 * Least privilege for `tcpdwell run`: which capabilities the agent needs, measured on Linux 6.18
 * (run as a non-root uid with only ambient capabilities; test/integration/security-caps.test.ts):
 *
 * | capability     | needed for                                                                 | when        |
 * |----------------|----------------------------------------------------------------------------|-------------|
 * | CAP_BPF        | creating maps, loading programs (kernel.unprivileged_bpf_disabled)          | start       |
 * | CAP_PERFMON    | tracing programs (tp_btf, iter/tcp) that read kernel memory                 | start       |
 * | CAP_SYSLOG     | reading real addresses from /proc/kallsyms (kernel.perf_event_paranoid > 1): | start       |
 * |                | libbpf resolves the tw_timer_handler __ksym there; zeroed, TIME_WAIT is lost |             |
 * | CAP_SYS_ADMIN  | setns(CLONE_NEWNET) to snapshot another network namespace; mounting bpffs   | start (*)   |
 * | CAP_SYS_PTRACE | finding namespaces through /proc/PID/ns/net of processes with more          | start (*)   |
 * |                | capabilities than ours or another uid (else they are silently invisible)   |             |
 * | CAP_SETPCAP    | dropping the others from the bounding set too (optional)                    | start       |
 *
 * Not needed: CAP_NET_ADMIN (sk_storage maps and iter/tcp load without it here), CAP_SYS_RESOURCE
 * (BPF memory is cgroup-accounted since 5.11), CAP_DAC_*.
 * After loading and attaching, operations on the fds the agent already holds — reading the ring
 * (mmap + epoll), map lookups and updates (counters, filters), program statistics, and running the
 * iterator in the agent's own network namespace — need no capability since Linux 6.5, which moved
 * the kernel.unprivileged_bpf_disabled check from every bpf() command to map and program creation
 * (commit "bpf: Move unprivileged checks into map_create() and bpf_prog_load()"; before 6.5, with
 * the sysctl set, every bpf() call needs CAP_BPF, so it is kept there).
 * (*) With --resnapshot, CAP_SYS_ADMIN and CAP_SYS_PTRACE are kept so the control service's
 * `snapshot` can enter other namespaces later; without it the agent keeps neither, and a later
 * snapshot covers only its own namespace (a conscious trade-off: CAP_SYS_ADMIN is nearly root).
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { capabilities, dropCapabilities } from 'bpf-ts-loader';

/** Capabilities `tcpdwell run` uses at start; anything else it holds is dropped too. */
export const START_CAPABILITIES = ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYSLOG', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SETPCAP'] as const;

/** True when bpf() on existing fds still needs CAP_BPF here: kernels before 6.5 with the sysctl set. */
export function bpfCallsNeedCapBpf(kernel = release(), sysctlPath = '/proc/sys/kernel/unprivileged_bpf_disabled'): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  const modern = m !== null && (Number(m[1]) > 6 || (Number(m[1]) === 6 && Number(m[2]) >= 5));
  if (modern) return false;
  try {
    return readFileSync(sysctlPath, 'utf8').trim() !== '0';
  } catch {
    return true;
  }
}

export interface DropResult {
  /** what the process keeps (effective set, after the drop) */
  kept: string[];
  dropped: string[];
  /** threads that block all signals and so kept their capabilities (see bpf-ts-loader) */
  unreached: number[];
}

/**
 * Drops every capability the running agent does not need any more: all of them, except
 * CAP_SYS_ADMIN + CAP_SYS_PTRACE with `resnapshot`, and CAP_BPF on kernels that need it for
 * bpf() calls. From the bounding set too when CAP_SETPCAP is held (so an exec cannot regain
 * them as root). Returns null when there was nothing to drop.
 */
export function dropAfterStart(opts: { resnapshot: boolean }): DropResult | null {
  const keep = new Set<string>(opts.resnapshot ? ['CAP_SYS_ADMIN', 'CAP_SYS_PTRACE'] : []);
  if (bpfCallsNeedCapBpf()) keep.add('CAP_BPF');
  const held = capabilities();
  const heldAnywhere = new Set([...held.permitted, ...held.effective, ...held.inheritable, ...held.ambient]);
  const drop = [...new Set([...heldAnywhere, ...(held.permitted.includes('CAP_SETPCAP') ? held.bounding : [])])].filter((c) => !keep.has(c));
  if (drop.length === 0) return null;
  const r = dropCapabilities(drop, { bounding: true });
  return { kept: capabilities().effective, dropped: r.dropped, unreached: r.unreached };
}
