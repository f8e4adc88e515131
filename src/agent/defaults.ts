/**
 * The agent's defaults, apart from the agent itself so that the command line can show them
 * without loading the kernel side (and its native addon).
 */

/**
 * Default latency budget of a batch (batching.ts): a light host sends ~4 messages a second
 * instead of ~40 (the collector's load at fleet scale); a busy one fills batches by size first.
 */
export const DEFAULT_FLUSH_MS = 500;

/** Default of AgentOptions.healIntervalMs: 5 minutes. */
export const DEFAULT_HEAL_MS = 300_000;

/** Default of AgentOptions.summaryIntervalMs: 10 s. */
export const DEFAULT_SUMMARY_MS = 10_000;

/** Where a fleet agent spools by default (`make run` uses the project's var/ instead). */
export const DEFAULT_SPOOL_DIR = '/var/lib/tcpdwell/spool';

/** The spool's default bound. */
export const DEFAULT_SPOOL_MAX_BYTES = 256 << 20;
