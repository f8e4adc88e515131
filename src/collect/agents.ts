/**
 * `tcpdwell agents`: the live agents, found through the NATS micro-service discovery (service
 * `tcpdwell`, src/publish/service.ts), each asked for its status on tcpdwell.control.<host>.status.
 */
import type { Writable } from 'node:stream';
import { connect } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import { EnvironmentError } from '../errors.js';
import { natsConnectOptions, type ConnectionSettings } from '../publish/nats-options.js';
import { SERVICE_NAME, controlSubject } from '../publish/service.js';

export interface AgentListing {
  host: string;
  id: string;
  version: string;
  /** the agent's status reply, or null when it did not answer in time */
  status: Record<string, unknown> | null;
  error: string | null;
}

export interface AgentsOptions {
  connection: ConnectionSettings;
  timeoutMs: number;
  format: 'json' | 'text';
  out: Writable;
  err: Writable;
}

/** Discovers agents and asks each for its status. */
export async function listAgents(connection: ConnectionSettings, timeoutMs: number): Promise<AgentListing[]> {
  const nc = await connect(natsConnectOptions(connection)).catch((err: Error) => {
    throw new EnvironmentError(`cannot reach NATS at ${connection.servers.join(',')}: ${err.message}`, { cause: err });
  });
  try {
    // @nats-io/services pins its own nats-core copy; the connection is the same thing (as in service.ts).
    const client = new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).client({ strategy: 'timer', maxWait: timeoutMs });
    const infos: { id: string; version: string; host: string }[] = [];
    for await (const i of await client.info(SERVICE_NAME)) infos.push({ id: i.id, version: i.version, host: i.metadata?.host ?? '' });
    const out = await Promise.all(
      infos.map(async (i): Promise<AgentListing> => {
        try {
          const r = await nc.request(`${controlSubject(i.host)}.status`, '', { timeout: timeoutMs });
          return { ...i, status: r.json<Record<string, unknown>>(), error: null };
        } catch (err) {
          return { ...i, status: null, error: (err as Error).message };
        }
      }),
    );
    return out.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  } finally {
    await nc.close();
  }
}

const num = (v: unknown) => (typeof v === 'number' ? v : 0);

/** Prints the agents as a table or JSON lines. */
export async function runAgents(o: AgentsOptions): Promise<AgentListing[]> {
  const agents = await listAgents(o.connection, o.timeoutMs);
  if (o.format === 'json') {
    for (const a of agents) o.out.write(`${JSON.stringify(a)}\n`);
  } else {
    o.out.write(`${'HOST'.padEnd(20)} ${'VERSION'.padEnd(8)} ${'EPOCH'.padEnd(6)} ${'UPTIME'.padEnd(9)} ${'EVENTS'.padEnd(10)} ${'SPOOL'.padEnd(8)} ${'NATS'.padEnd(12)} LOST\n`);
    for (const a of agents) {
      const s = a.status as { epoch?: string; uptimeS?: number; events?: number; spool?: { messages?: number }; nats?: { connected?: boolean }; drops?: Record<string, number> } | null;
      if (!s) {
        o.out.write(`${a.host.padEnd(20)} ${a.version.padEnd(8)} (no status: ${a.error})\n`);
        continue;
      }
      const d = s.drops ?? {};
      const lost = num(d.lost_ring_full) + num(d.malformed) + num(d.spoolDropped) + num(d.skipped_transitions);
      o.out.write(
        `${a.host.padEnd(20)} ${a.version.padEnd(8)} ${String(s.epoch ?? '-').padEnd(6)} ${`${Math.round(num(s.uptimeS))}s`.padEnd(9)} ${String(num(s.events)).padEnd(10)} ` +
          `${String(num(s.spool?.messages)).padEnd(8)} ${(s.nats?.connected ? 'connected' : 'spooling').padEnd(12)} ${lost}\n`,
      );
    }
  }
  o.err.write(`tcpdwell agents: ${agents.length} agent${agents.length === 1 ? '' : 's'} answered\n`);
  return agents;
}
