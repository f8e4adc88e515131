/**
 * The one logger of every command's stderr lines. Text (the default) is what a person reads:
 * `tcpdwell run: message`, `tcpdwell run: warning: message`. `--log-format json` (or
 * TCPDWELL_LOG_FORMAT=json) gives what log pipelines parse, one object per line:
 *   {"time":"2026-12-01T09:00:00.000Z","level":"info","command":"run","msg":"publishing to ..."}
 * Levels: info (progress and status), warn (something to fix that does not stop the command),
 * error (the command stops; the exit code says how).
 */
import type { Writable } from 'node:stream';

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogLevel = 'info' | 'warn' | 'error';

let format: LogFormat = 'text';

/** Chosen once per process, before a command runs (src/cli/program.ts). */
export function setLogFormat(f: LogFormat): void {
  format = f;
}

export function logFormat(): LogFormat {
  return format;
}

/** A line logger of one command: called as a function it logs at info. */
export interface Logger {
  (msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** One line, formatted for the chosen format. */
export function formatLine(command: string, level: LogLevel, msg: string, nowMs = Date.now(), f: LogFormat = format): string {
  if (f === 'json') return `${JSON.stringify({ time: new Date(nowMs).toISOString(), level, ...(command ? { command } : {}), msg })}\n`;
  return `tcpdwell${command ? ` ${command}` : ''}: ${level === 'warn' ? 'warning: ' : level === 'error' && command ? 'error: ' : ''}${msg}\n`;
}

/** The logger of `command` ('' for the program itself), writing to `out` (stderr by default). */
export function logger(command: string, out: Writable = process.stderr): Logger {
  const write = (level: LogLevel) => (msg: string) => void out.write(formatLine(command, level, msg));
  return Object.assign(write('info'), { info: write('info'), warn: write('warn'), error: write('error') });
}
