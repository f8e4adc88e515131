// What the benchmarks share: where the project's pieces are (make builds them), and how a run cleans up.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CHURN = join(ROOT, 'bench/.output/churn');
export const TCPDWELL = join(ROOT, 'bin/tcpdwell');
export const OUT_DIR = join(ROOT, 'bench/.output');

/** Runs cleanup at exit, and on SIGINT/SIGTERM first says so (`what` is being removed) and exits 130. */
export function cleanupOnExit(cleanup, log, what) {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      log(`${sig}: stopping, deleting ${what}`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('exit', cleanup);
}
