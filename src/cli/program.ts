/**
 * The tcpdwell command line: one file per command in commands/, each registering its flags and
 * wiring the stages together. A command loads the stages it runs when it runs, so `collect`,
 * `query`, `tail`, `agents`, `explain` and `top --nats` never load the kernel side (or its
 * native addon).
 */
import { Command, CommanderError } from 'commander';
import { EnvironmentError, UsageError } from '../common/errors.js';
import * as agents from './commands/agents.js';
import * as collect from './commands/collect.js';
import * as explain from './commands/explain.js';
import * as query from './commands/query.js';
import * as sql from './commands/sql.js';
import * as run from './commands/run.js';
import * as states from './commands/states.js';
import * as tail from './commands/tail.js';
import * as top from './commands/top.js';
import * as trace from './commands/trace.js';
import * as uninstall from './commands/uninstall.js';

/** Every command, in the order `--help` lists them. */
const COMMANDS = [trace, run, uninstall, states, tail, top, explain, collect, query, sql, agents];

export function buildProgram(): Command {
  const program = new Command('tcpdwell')
    .description('Every TCP state transition on this host, with the exact time spent in each state (TIME_WAIT included).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const c of COMMANDS) c.register(program);
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
