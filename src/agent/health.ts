/**
 * What "ready" means for an agent (/readyz, the systemd unit's READY=1): its programs are
 * attached and the ring is being read, and what it captures reaches NATS — or waits in the spool
 * with room to spare. Liveness (/healthz, the watchdog) is the event loop's, in src/publish/metrics.ts.
 */
import type { HealthCheck, HealthSource } from '../publish/metrics.js';
import type { AgentStatus } from '../publish/service.js';

/** Past this share of --spool-max-bytes a disconnected agent is about to drop its oldest messages. */
export const SPOOL_READY_FRACTION = 0.9;

export interface HealthTarget {
  /** true once started: programs attached, ring read, first snapshot taken */
  readonly reading: boolean;
  status(): AgentStatus;
}

export function natsCheck(s: Pick<AgentStatus, 'nats' | 'spool'>): HealthCheck {
  const { bytes, maxBytes, messages } = s.spool;
  if (s.nats.connected) return { name: 'nats', ok: true, detail: `connected; ${s.nats.published} messages published, ${messages} waiting in the spool` };
  const ok = bytes < maxBytes * SPOOL_READY_FRACTION;
  const share = `${messages} messages, ${bytes} of ${maxBytes} bytes (${Math.round((100 * bytes) / maxBytes)} %)`;
  return {
    name: 'nats',
    ok,
    detail: ok
      ? s.nats.streamMissing
        ? `connected, but the stream is missing and not this agent's to create: spooling (${share}); sent once it exists`
        : `unreachable: spooling (${share}); sent when NATS is back`
      : `${s.nats.streamMissing ? 'no stream to publish to' : 'unreachable'} and the spool is nearly full (${share}): the oldest messages are being dropped; check NATS, or give a larger --spool-max-bytes`,
  };
}

export function agentHealth(agent: HealthTarget): HealthSource {
  return {
    ready: () => {
      const s = agent.status();
      return [
        { name: 'kernel', ok: agent.reading, detail: agent.reading ? `programs attached, ring read (${s.events} events)` : 'starting: programs not attached or ring not read yet' },
        natsCheck(s),
      ];
    },
  };
}
