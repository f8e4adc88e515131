/**
 * The JetStream stream the agents publish into: made, when missing, the same way by an agent and
 * by a collector (whichever comes first), and checked to capture the agents' subjects when it
 * exists. Retention defaults: 7 days, 1 GiB; de-duplication window 10 minutes, longer than an
 * outage we expect to ride out (re-sends of spooled messages carry the same message ids).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { EnvironmentError } from '../common/errors.js';
import { capturesAgentSubjects, STREAM_SUBJECTS } from './subjects.js';

export interface AgentStreamOptions {
  name: string;
  /** make it when missing (default true); false: a missing stream is a StreamMissingError */
  create?: boolean;
  replicas?: number;
  maxAgeS?: number;
  maxBytes?: number;
  duplicateWindowS?: number;
}

const nanos = (s: number) => Math.round(s * 1e9);

/**
 * The stream is missing and this process may not make it: fleets provision it centrally (the
 * collector makes it, or an operator), and agents wait for it, spooling meanwhile.
 */
export class StreamMissingError extends EnvironmentError {
  constructor(readonly stream: string) {
    super(
      `JetStream stream ${stream} does not exist and this agent does not create it: start tcpdwell collect (which creates it), ` +
        `create it yourself (subjects ${STREAM_SUBJECTS}), or give the agent --create-stream (its NATS user then needs $JS.API.STREAM.CREATE.${stream})`,
    );
  }
}

/**
 * A cluster still forming (its nodes just started, routes not yet up, no meta leader) answers a
 * replicated stream's creation with this for a few seconds: seen when collectors start together
 * with a 3-node cluster (exactly-once test, once in a CI run).
 */
const CLUSTER_FORMING = /no suitable peers for placement|insufficient resources|temporarily unavailable/i;
const CLUSTER_FORMING_WAIT_MS = 30_000;

/** streams.add, retried while the cluster forms; after CLUSTER_FORMING_WAIT_MS, one clear error. */
async function addWhileFormed(jsm: JetStreamManager, config: Parameters<JetStreamManager['streams']['add']>[0]): Promise<void> {
  const deadline = Date.now() + CLUSTER_FORMING_WAIT_MS;
  for (;;) {
    try {
      await jsm.streams.add(config);
      return;
    } catch (e) {
      const msg = (e as Error).message;
      if (!CLUSTER_FORMING.test(msg)) throw e;
      if (Date.now() > deadline) {
        throw new EnvironmentError(
          `JetStream could not place stream ${config.name} with ${config.num_replicas} replicas for ${CLUSTER_FORMING_WAIT_MS / 1000} s (${msg}): start at least that many JetStream servers in the cluster, or lower --replicas`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Makes sure the stream exists and captures tcpdwell.v1.>; true when this call created it. */
export async function ensureAgentStream(jsm: JetStreamManager, o: AgentStreamOptions): Promise<boolean> {
  let subjects: string[] | undefined;
  try {
    subjects = (await jsm.streams.info(o.name)).config.subjects;
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    if (o.create === false) throw new StreamMissingError(o.name);
    try {
      await addWhileFormed(jsm, {
        name: o.name,
        subjects: [STREAM_SUBJECTS],
        num_replicas: o.replicas ?? 1,
        max_age: nanos(o.maxAgeS ?? 7 * 86400),
        max_bytes: o.maxBytes ?? 1 << 30,
        duplicate_window: nanos(o.duplicateWindowS ?? 600),
      });
      return true;
    } catch (e) {
      // Another agent or collector made it meanwhile: check that one.
      if (!/already in use|exists/i.test((e as Error).message)) throw e;
      subjects = (await jsm.streams.info(o.name)).config.subjects;
    }
  }
  if (!capturesAgentSubjects(subjects)) {
    throw new EnvironmentError(
      `JetStream stream ${o.name} exists but does not capture ${STREAM_SUBJECTS} (it has ${subjects?.join(', ')}): add that subject to it, or give another stream name (--stream)`,
    );
  }
  return false;
}
