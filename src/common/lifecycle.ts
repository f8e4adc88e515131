/**
 * How a long-running command stops: at SIGINT or SIGTERM (Ctrl-C, systemd, kubelet), when its
 * --duration is up, or when something of its own says so (a closed pipe, a key, a test). One
 * helper for every command, so they all stop the same way and leave no listener behind.
 */

export interface StopOptions {
  /** stop after this many seconds; null or undefined = only on a signal */
  durationS?: number | null;
  /** the signals that stop it (default SIGINT and SIGTERM) */
  signals?: readonly NodeJS.Signals[];
  /** also stop when this settles (a rejection is passed on) */
  also?: Promise<unknown>;
}

/** Resolves at the first signal, at the end of the duration, or when `also` resolves. */
export async function untilStopped(o: StopOptions = {}): Promise<void> {
  const signals = o.signals ?? ['SIGINT', 'SIGTERM'];
  let done: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (done = resolve));
  for (const s of signals) process.once(s, done);
  const timer = o.durationS != null ? setTimeout(done, o.durationS * 1000) : undefined;
  try {
    await (o.also ? Promise.race([stopped, o.also]) : stopped);
  } finally {
    clearTimeout(timer);
    for (const s of signals) process.off(s, done);
  }
}
