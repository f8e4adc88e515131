/**
 * Errors the CLI turns into one clear line and an exit code, never a stack trace.
 * Each says what is wrong and what to do.
 */

/** Bad flags or arguments: exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
}

/** The machine cannot do what was asked (privileges, BTF, kernel support): exit code 1. */
export class EnvironmentError extends Error {
  override readonly name = 'EnvironmentError';
  readonly exitCode = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
