/** `tcpdwell agents`: the live agents (NATS micro-service discovery) and their status (src/collect/agents.ts). */
import type { Command } from 'commander';
import { LOSS_REASONS } from '../../kernel/abi.js';
import { listAgents } from '../../collect/agents.js';
import { lossesOf } from '../../publish/service.js';
import { addConnectionOptions, addFormatOption, outputFormat, parseSeconds, resolveConnection, type ConnectionFlags } from '../options.js';
import { logger } from '../../common/log.js';

const num = (v: unknown) => (typeof v === 'number' ? v : 0);

export function register(program: Command): void {
  const cmd = addConnectionOptions(program.command('agents').description('list the live agents (NATS micro-service discovery) with their status')).option(
    '--timeout <seconds>',
    'how long to wait for answers',
    parseSeconds,
    2,
  );
  addFormatOption(cmd, 'a table or JSON lines').action(async (o: ConnectionFlags & { timeout: number; format?: 'json' | 'text' }) => {
    const agents = await listAgents(resolveConnection(o, undefined, logger('agents')), o.timeout * 1000);
    const out = process.stdout;
    if (outputFormat(o.format) === 'json') {
      for (const a of agents) out.write(`${JSON.stringify(a)}\n`);
    } else {
      out.write(`${'HOST'.padEnd(20)} ${'VERSION'.padEnd(8)} ${'EPOCH'.padEnd(6)} ${'UPTIME'.padEnd(9)} ${'EVENTS'.padEnd(10)} ${'SPOOL'.padEnd(8)} ${'NATS'.padEnd(12)} LOST\n`);
      for (const a of agents) {
        const s = a.status;
        if (!s) {
          out.write(`${a.host.padEnd(20)} ${a.version.padEnd(8)} (no status: ${a.error})\n`);
          continue;
        }
        const d = s.drops;
        const lost = lossesOf({ lost_ring_full: num(d?.lost_ring_full), skipped_transitions: num(d?.skipped_transitions), malformed: num(d?.malformed), spoolDropped: num(d?.spoolDropped) });
        const total = LOSS_REASONS.reduce((sum, r) => sum + lost[r.name], 0);
        out.write(
          `${a.host.padEnd(20)} ${a.version.padEnd(8)} ${String(s.epoch ?? '-').padEnd(6)} ${`${Math.round(num(s.uptimeS))}s`.padEnd(9)} ${String(num(s.events)).padEnd(10)} ` +
            `${String(num(s.spool?.messages)).padEnd(8)} ${(s.nats?.connected ? 'connected' : 'spooling').padEnd(12)} ${total}\n`,
        );
      }
    }
    logger('agents')(`${agents.length} agent${agents.length === 1 ? '' : 's'} answered`);
  });
}
