/**
 * The agent's defaults, apart from the agent itself so that the command line can show them
 * without loading the kernel side (and its native addon).
 */

/** Default batch timer: with the ring's 10 ms poll, events reach NATS well within 100 ms. */
export const DEFAULT_FLUSH_MS = 50;

/** Default of AgentOptions.healIntervalMs: 5 minutes. */
export const DEFAULT_HEAL_MS = 300_000;

/** Default of AgentOptions.summaryIntervalMs: 10 s. */
export const DEFAULT_SUMMARY_MS = 10_000;

/** Where a fleet agent spools by default (`make run` uses the project's var/ instead). */
export const DEFAULT_SPOOL_DIR = '/var/lib/tcpdwell/spool';

/** The spool's default bound. */
export const DEFAULT_SPOOL_MAX_BYTES = 256 << 20;
