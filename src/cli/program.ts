/**
 * The tcpdwell command line: one file per command in commands/, each registering its flags and
 * wiring the stages together. A command loads the stages it runs when it runs, so `collect`,
 * `query`, `tail`, `agents`, `explain` and `top --nats` never load the kernel side (or its
 * native addon).
 */
import { Command, CommanderError, Option } from 'commander';
import { EnvironmentError, UsageError } from '../common/errors.js';
import { LOG_FORMATS, logFormat, logger, setLogFormat, type LogFormat } from '../common/log.js';
import { VERSION } from '../common/version.js';
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

/** `tcpdwell --version`: the version, and the runtime it is on (what a bug report needs). */
export const versionLine = () => `tcpdwell ${VERSION} (Node.js ${process.versions.node}, ${process.platform}-${process.arch})`;

export function buildProgram(): Command {
  const program = new Command('tcpdwell')
    .description('Every TCP state transition on this host, with the exact time spent in each state (TIME_WAIT included).')
    .version(versionLine(), '-V, --version', 'print the version (and the Node.js it runs on)')
    .addOption(new Option('--log-format <format>', 'stderr lines as text, or as one JSON object each (time, level, command, msg)').choices([...LOG_FORMATS]).default('text').env('TCPDWELL_LOG_FORMAT'))
    // The hint is for a person; a log pipeline gets the one JSON line.
    .showHelpAfterError(logFormat() === 'text' ? '(run with --help for usage)' : false)
    .exitOverride();
  // commander's own complaints (unknown option, missing argument) go through the logger too.
  const log = logger('');
  program.configureOutput({ outputError: (str) => log.error(str.replace(/^error: /, '').trim()) });
  for (const c of COMMANDS) c.register(program);
  for (const cmd of program.commands) cmd.configureOutput({ outputError: (str) => log.error(str.replace(/^error: /, '').trim()) });
  return program;
}

/**
 * The log format, known before parsing so that every line — commander's usage errors too — is
 * written in it: --log-format FORMAT / --log-format=FORMAT anywhere, else TCPDWELL_LOG_FORMAT.
 * commander validates the value again (a bad one is a usage error, in text).
 */
export function logFormatOf(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): LogFormat {
  let v: string | undefined = env.TCPDWELL_LOG_FORMAT;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') break;
    if (argv[i] === '--log-format') v = argv[i + 1];
    else if (argv[i]!.startsWith('--log-format=')) v = argv[i]!.slice('--log-format='.length);
  }
  return (LOG_FORMATS as readonly string[]).includes(v ?? '') ? (v as LogFormat) : 'text';
}

export async function main(argv: string[]): Promise<number> {
  setLogFormat(logFormatOf(argv));
  const log = logger('');
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its message; help and version are not errors.
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version' ? 0 : 2;
    }
    if (err instanceof UsageError || err instanceof EnvironmentError) {
      log.error(err.message);
      return err.exitCode;
    }
    const e = err as Error;
    log.error(`unexpected error: ${e?.message ?? String(err)}${process.env.TCPDWELL_DEBUG ? `\n${e?.stack}` : ''}`);
    return 1;
  }
}
