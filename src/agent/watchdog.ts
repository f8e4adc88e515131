/**
 * The agent under systemd (deploy/systemd/tcpdwell.service: Type=notify, WatchdogSec=): READY=1
 * once it has started — programs attached, first snapshot taken, capabilities dropped — and
 * WATCHDOG=1 every third of WATCHDOG_USEC while its event loop is not stalled (the /healthz
 * check), so a loop held longer than WatchdogSec= gets the service killed and restarted
 * (Restart=on-failure). STATUS= carries the status line for `systemctl status`; STOPPING=1 marks
 * the orderly stop. Outside systemd ($NOTIFY_SOCKET unset) nothing is sent.
 */
import { notifyServiceManager } from 'bpf-ts-loader';
import { EventLoopWatch, liveChecks, type HealthSource } from '../publish/metrics.js';

export interface ServiceNotifier {
  /** STATUS=line (shown by systemctl status) */
  status(line: string): void;
  /** STOPPING=1, and no more pings */
  stop(): void;
}

export interface ServiceNotifyOptions {
  health: HealthSource;
  log: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** pid the watchdog is meant for, as systemd's WATCHDOG_PID (default: this process) */
  pid?: number;
}

/** Sends READY=1 and starts the watchdog pings; null when not run by a service manager. */
export function startServiceNotify(o: ServiceNotifyOptions): ServiceNotifier | null {
  const env = o.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return null;
  let failed = false;
  const send = (state: string) => {
    try {
      notifyServiceManager(state, socket);
      failed = false;
    } catch (err) {
      // Said once per run of failures: the service manager restarts a silent watchdog anyway.
      if (!failed) o.log(`cannot notify systemd at ${socket}: ${(err as Error).message}`);
      failed = true;
    }
  };
  send('READY=1');
  const usec = Number(env.WATCHDOG_USEC);
  const mine = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === (o.pid ?? process.pid);
  let timer: NodeJS.Timeout | undefined;
  let loop: EventLoopWatch | undefined;
  if (usec > 0 && mine) {
    loop = new EventLoopWatch();
    const everyMs = Math.max(100, usec / 1000 / 3);
    timer = setInterval(() => {
      const failing = liveChecks(loop!, o.health).filter((c) => !c.ok);
      if (failing.length === 0) send('WATCHDOG=1');
      else o.log(`watchdog: not pinging systemd: ${failing.map((c) => `${c.name}: ${c.detail}`).join('; ')}`);
    }, everyMs);
    timer.unref();
  }
  return {
    status: (line) => send(`STATUS=${line.replace(/\n/g, ' ')}`),
    stop: () => {
      clearInterval(timer);
      loop?.close();
      send('STOPPING=1');
    },
  };
}
