/** `tcpdwell uninstall`: removes the agent's pinned kernel state (what `run` keeps across restarts). */
import type { Command } from 'commander';
import { DEFAULT_PIN_DIR, removePinned } from '../../kernel/pins.js';
import { logger } from '../../common/log.js';

export function register(program: Command): void {
  program
    .command('uninstall')
    .description("remove the agent's pinned kernel state (what `run` keeps across restarts)")
    .option('--pin-dir <dir>', 'the directory given to run --pin-dir', DEFAULT_PIN_DIR)
    .action((o: { pinDir: string }) => {
      const removed = removePinned(o.pinDir);
      logger('uninstall')(removed.length ? `removed ${removed.join(', ')}` : `nothing pinned in ${o.pinDir}`);
    });
}
