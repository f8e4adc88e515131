/** `tcpdwell explain [STATE]`: what a state means and what to do about it (src/track/explain.ts). */
import type { Command } from 'commander';
import { explain } from '../../track/explain.js';

export function register(program: Command): void {
  program
    .command('explain')
    .description('what a TCP state means, when a pile-up of it is normal and when it is an incident, and what to check next (every state without an argument)')
    .argument('[state]', 'a kernel state (CLOSE_WAIT), the name ss prints (CLOSE-WAIT, ESTAB), or a detector (close_wait_leak)')
    .action((state: string | undefined) => {
      const width = Math.min(process.stdout.columns || 100, 100);
      process.stdout.write(explain(state, width));
    });
}
