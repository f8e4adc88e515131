/** Entry point of bin/tcpdwell. */
import { main } from './cli/program.js';

// exitCode rather than exit(): stdout may be a pipe that still holds the last lines.
process.exitCode = await main(process.argv.slice(2));
