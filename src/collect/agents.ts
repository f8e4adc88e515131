/**
 * The live agents, found through the NATS micro-service discovery (service `tcpdwell`,
 * src/publish/service.ts), each asked for its status on tcpdwell.control.<host>.status.
 */
import { Svcm } from '@nats-io/services';
import { connectNats, type ConnectionSettings } from '../publish/connection.js';
import type { AgentStatus } from '../publish/service.js';
import { CONTROL_SERVICE, controlSubject } from '../publish/subjects.js';

export interface AgentListing {
  host: string;
  id: string;
  version: string;
  /** the agent's status reply (an older agent's may lack fields), or null when it did not answer in time */
  status: Partial<AgentStatus> | null;
  error: string | null;
}

/** Discovers agents and asks each for its status. */
export async function listAgents(connection: ConnectionSettings, timeoutMs: number): Promise<AgentListing[]> {
  const nc = await connectNats(connection);
  try {
    // @nats-io/services pins its own nats-core copy; the connection is the same thing (as in service.ts).
    const client = new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).client({ strategy: 'timer', maxWait: timeoutMs });
    const infos: { id: string; version: string; host: string }[] = [];
    for await (const i of await client.info(CONTROL_SERVICE)) infos.push({ id: i.id, version: i.version, host: i.metadata?.host ?? '' });
    const out = await Promise.all(
      infos.map(async (i): Promise<AgentListing> => {
        try {
          const r = await nc.request(`${controlSubject(i.host)}.status`, '', { timeout: timeoutMs });
          return { ...i, status: r.json<Partial<AgentStatus>>(), error: null };
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
