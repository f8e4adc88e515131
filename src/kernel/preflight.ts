/**
 * What loading the kernel program needs, checked before trying, so the user gets one clear
 * line instead of a verifier dump: BTF (CO-RE, tp_btf), the capabilities (src/kernel/privileges.ts
 * has the measured table), and real kernel addresses in /proc/kallsyms.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { EnvironmentError } from '../common/errors.js';

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Effective capabilities of this process, from /proc/self/status. */
function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const hasCap = (caps: bigint, cap: number) => (caps & (1n << BigInt(cap))) !== 0n;

/**
 * Checks what loading needs before trying: BTF (CO-RE, tp_btf), CAP_BPF + CAP_PERFMON (tracing
 * programs, reading kernel memory) or CAP_SYS_ADMIN, and kallsyms addresses.
 */
export function checkEnvironment(): void {
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new EnvironmentError(
      'this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): tcpdwell needs a kernel built with CONFIG_DEBUG_INFO_BTF=y',
    );
  }
  const caps = effectiveCaps();
  // Measured (src/kernel/privileges.ts): CAP_NET_ADMIN is not needed; CAP_SYS_ADMIN only to enter
  // other network namespaces for snapshots.
  const bpfOk = hasCap(caps, CAP_SYS_ADMIN) || (hasCap(caps, CAP_BPF) && hasCap(caps, CAP_PERFMON));
  if (!bpfOk) {
    throw new EnvironmentError(
      'tcpdwell needs root, or the capabilities CAP_BPF and CAP_PERFMON (+ CAP_SYSLOG where kallsyms is restricted, + CAP_SYS_ADMIN to snapshot other network namespaces) ' +
        '(e.g. sudo ./bin/tcpdwell trace, or setcap cap_bpf,cap_perfmon,cap_syslog,cap_sys_admin+ep on node)',
    );
  }
  if (kallsymsHidden()) {
    // libbpf resolves the tw_timer_handler __ksym from /proc/kallsyms; zeroed addresses load
    // fine and then silently match no timer: every TIME_WAIT start and end would be lost.
    throw new EnvironmentError(
      '/proc/kallsyms hides kernel addresses from this process (kernel.kptr_restrict, kernel.perf_event_paranoid > 1): ' +
        'tcpdwell needs CAP_SYSLOG to resolve tw_timer_handler, or TIME_WAIT could not be traced',
    );
  }
}

/** True when /proc/kallsyms shows this process only zeroed addresses (no CAP_SYSLOG where it is needed). */
function kallsymsHidden(): boolean {
  let head: string;
  try {
    const fd = openSync('/proc/kallsyms', 'r');
    try {
      const buf = Buffer.alloc(4096);
      head = buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, null));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // no kallsyms at all: libbpf will say so at load
  }
  const addrs = [...head.matchAll(/^([0-9a-f]+) /gm)].map((m) => m[1]!);
  return addrs.length > 0 && addrs.every((a) => /^0+$/.test(a));
}
