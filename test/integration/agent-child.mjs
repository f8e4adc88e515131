// The Agent (built, from dist/) as a process of its own, for tests that run it somewhere else
// than the test itself (e.g. inside a network namespace with `ip netns exec`):
//   node test/integration/agent-child.mjs '<AgentOptions as JSON>'
// Logs to stderr ("agent ready" once started); on SIGTERM stops and prints its final status
// as one JSON line on stdout, then exits 0.
import { Agent } from '../../dist/agent/agent.js';

const opts = JSON.parse(process.argv[2] ?? '{}');
const agent = await Agent.start({ ...opts, log: (line) => process.stderr.write(`${line}\n`) });
process.stderr.write('agent ready\n');
process.once('SIGTERM', async () => {
  const status = await agent.stop(20_000);
  process.stdout.write(`${JSON.stringify(status, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  process.exit(0);
});
