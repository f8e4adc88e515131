/**
 * The agent's control service (NATS micro-service protocol, @nats-io/services): the fleet can
 * discover agents ($SRV.PING/INFO/STATS) and ask each one questions on its own subjects:
 *   tcpdwell.control.<host>.status | states | snapshot | config
 * Replies are JSON; `status` is an AgentStatus (what `tcpdwell agents` shows).
 */
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/nats-core';
import type { LossReason } from '../kernel/abi.js';
import { FILTER_RULES, type KernelFilters } from '../kernel/filters.js';
import type { KernelCounters } from '../kernel/tracer.js';
import { parseThresholdValue, type DetectorThresholds, type TrackerStats } from '../track/index.js';
import { CONTROL_SERVICE, controlSubject } from './subjects.js';

/** An agent's status: the `status` endpoint's reply, and what `tcpdwell run` prints a line of. */
export interface AgentStatus {
  host: string;
  version: string;
  epoch: string;
  uptimeS: number;
  events: number;
  batches: number;
  drops: KernelCounters & { malformed: number; spoolDropped: number; spoolDroppedEvents: number; spoolCorrupt: number };
  /** maxBytes: the spool's bound (--spool-max-bytes), past which the oldest messages are dropped */
  spool: { messages: number; bytes: number; maxBytes: number };
  /** streamMissing: connected, but waiting for the stream to be created (no --create-stream) */
  nats: { connected: boolean; streamMissing?: boolean; published: number; publishErrors: number };
  filters: KernelFilters;
  tracker: TrackerStats;
  alertsFiring: number;
}

/** The events an agent lost, by reason (bpf/tcpdwell.h enum tcpdwell_loss_reason), from its status. */
export const lossesOf = (d: Pick<AgentStatus['drops'], 'lost_ring_full' | 'skipped_transitions' | 'malformed' | 'spoolDropped'>): Record<LossReason, number> => ({
  ring_full: d.lost_ring_full,
  kernel_skipped: d.skipped_transitions,
  malformed: d.malformed,
  spool_dropped: d.spoolDropped,
});

/** What the service needs from the agent. */
export interface ControlTarget {
  readonly host: string;
  status(): AgentStatus;
  snapshotNow(): number;
  setFilters(f: KernelFilters): void;
  /** detector thresholds at run time; throws (UsageError) on a bad one, changing nothing */
  setThresholds?(t: Partial<DetectorThresholds>): unknown;
  /** live socket counts per state (from the agent core), if it keeps them */
  states?(): unknown;
}

export interface ControlService {
  stop(): Promise<void>;
}

function json(msg: ServiceMsg, body: unknown) {
  msg.respond(JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
}

/**
 * Validates a `config` request: { netns?: number[], ports?: number[], family?: "inet"|"inet6"|null,
 * thresholds?: { closeWaitAgeNs: "30s", connectFailures: 20, ... } }. When any filter field is given,
 * the filters are replaced as a whole (those not given are cleared); thresholds are merged.
 */
export function parseConfigRequest(text: string): { filters?: KernelFilters; thresholds?: Partial<DetectorThresholds> } {
  let body: unknown;
  try {
    body = JSON.parse(text || '{}');
  } catch {
    throw new Error('config: the request must be JSON, e.g. {"ports":[443],"netns":[],"family":null}');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('config: the request must be a JSON object');
  const o = body as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!['netns', 'ports', 'family', 'thresholds'].includes(key)) throw new Error(`config: unknown field "${key}" (known: netns, ports, family, thresholds)`);
  }
  for (const name of ['netns', 'ports', 'family'] as const) {
    const [valid, what] = FILTER_RULES[name];
    if (o[name] !== undefined && !valid(o[name])) throw new Error(`config: "${name}" must be ${what}`);
  }
  let thresholds: Partial<DetectorThresholds> | undefined;
  if (o.thresholds !== undefined) {
    if (typeof o.thresholds !== 'object' || o.thresholds === null || Array.isArray(o.thresholds)) {
      throw new Error('config: "thresholds" must be an object, e.g. {"closeWaitAgeNs":"30s"}');
    }
    thresholds = {};
    for (const [name, value] of Object.entries(o.thresholds)) {
      try {
        (thresholds as Record<string, unknown>)[name] = parseThresholdValue(name, value);
      } catch (err) {
        throw new Error(`config: ${(err as Error).message}`);
      }
    }
  }
  const filters: KernelFilters = { netns: o.netns as number[] | undefined, ports: o.ports as number[] | undefined, family: (o.family as KernelFilters['family']) ?? null };
  const hasFilters = 'netns' in o || 'ports' in o || 'family' in o;
  return { ...(hasFilters ? { filters } : {}), ...(thresholds ? { thresholds } : {}) };
}

export async function startControlService(nc: NatsConnection, agent: ControlTarget, opts: { config?: boolean } = {}): Promise<ControlService> {
  // @nats-io/services 3.0.0-25 pins its own nats-core copy; the connection is the same thing.
  const svc: Service = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
    name: CONTROL_SERVICE,
    version: agent.status().version,
    description: 'tcpdwell agent: TCP state transitions and dwell times of one host',
    metadata: { host: agent.host },
  });
  const group = svc.addGroup(controlSubject(agent.host), '');
  group.addEndpoint('status', (_err, msg) => json(msg, agent.status()));
  group.addEndpoint('states', (_err, msg) => json(msg, agent.states?.() ?? null));
  group.addEndpoint('snapshot', (_err, msg) => json(msg, { sockets: agent.snapshotNow() }));
  group.addEndpoint('config', (_err, msg) => {
    if (opts.config === false) {
      msg.respondError(403, 'config is disabled on this agent (--no-control-config)');
      return;
    }
    try {
      const { filters, thresholds } = parseConfigRequest(msg.string());
      const applied = thresholds && agent.setThresholds ? agent.setThresholds(thresholds) : undefined;
      if (filters) agent.setFilters(filters);
      json(msg, { ok: true, filters: agent.status().filters, thresholds: applied });
    } catch (err) {
      msg.respondError(400, (err as Error).message);
    }
  });
  return { stop: () => svc.stop().then(() => undefined) };
}
