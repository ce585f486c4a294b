// One user-facing error type. Library code throws it with the exit code the situation calls for;
// only the CLI entry (runtime/cli.ts) turns it into a message on stderr and that exit code.

/** Exit codes: 1 the work failed (a rejected mechanism, a run that could not finish), 2 bad input. */
export type ExitCode = 1 | 2;

export class UserError extends Error {
  override name = "UserError";
  readonly exitCode: ExitCode;

  constructor(message: string, exitCode: ExitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}
