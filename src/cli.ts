/** The tcpdwell command line. It only parses and wires modules together. */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EnvironmentError, UsageError } from './errors.js';
import { resolveNetns } from './netns.js';
import { runTrace } from './trace.js';

const collect = <T>(parse: (v: string) => T) => (value: string, previous: T[] = []) => [...previous, parse(value)];

function parsePort(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
    throw new InvalidArgumentError(`'${v}' is not a port: give a number from 1 to 65535.`);
  }
  return Number(v);
}

function parseSeconds(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds > 0, e.g. 10 or 0.5.`);
  return n;
}

function parseRingBytes(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 4096 || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`'${v}' is not a ring size: give a power of two of at least 4096 (bytes).`);
  }
  return n;
}

export function buildProgram(): Command {
  const program = new Command('tcpdwell')
    .description('Every TCP state transition on this host, with the exact time spent in each state (TIME_WAIT included).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('trace')
    .description('print every TCP state transition, timewait phase and (at start) existing socket')
    .addOption(new Option('--format <format>', 'json lines or a text table (default: text on a terminal, json otherwise)').choices(['json', 'text']))
    .option('--netns <name|path|inode>', 'only this network namespace (repeatable): a name from `ip netns`, a path like /proc/PID/ns/net, or an inode', collect(String), [])
    .option('--port <n>', 'only sockets with this port at either end (repeatable)', collect(parsePort), [])
    .addOption(new Option('--family <4|6>', 'only IPv4 or only IPv6').choices(['4', '6']))
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .option('--no-snapshot', 'do not list the sockets that exist when tracing starts')
    .option('--ring-bytes <n>', 'kernel ring buffer size in bytes (power of two)', parseRingBytes)
    .action(async (o: { format?: 'json' | 'text'; netns: string[]; port: number[]; family?: '4' | '6'; duration?: number; snapshot: boolean; ringBytes?: number }) => {
      const netns = o.netns.map((spec) => resolveNetns(spec));
      await runTrace({
        format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
        netns,
        ports: o.port,
        family: o.family === '4' ? 'inet' : o.family === '6' ? 'inet6' : null,
        durationS: o.duration ?? null,
        snapshot: o.snapshot,
        ringBytes: o.ringBytes,
        out: process.stdout,
        err: process.stderr,
      });
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its message; help and version are not errors.
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.help' ? 0 : 2;
    }
    if (err instanceof UsageError || err instanceof EnvironmentError) {
      process.stderr.write(`tcpdwell: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`tcpdwell: unexpected error: ${e?.message ?? String(err)}\n`);
    if (process.env.TCPDWELL_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return 1;
  }
}
