// What scripts can rely on; documented in `--help` and the README.
export const exitCodes = {
  ok: 0,
  // The batch ended with failed or canceled tasks, or items the API refused.
  batchHadFailures: 1,
  // Bad flags or arguments, an unreadable input.
  usage: 2,
  // The API answered with an error (auth refused, batch not found, validation, 5xx).
  api: 3,
  // The API could not be reached at all (nothing listening, DNS, timeout).
  unreachable: 4,
  // A downloaded image did not match the manifest's sha256 (after one retry).
  verification: 5,
  // A bug or an unexpected local failure (disk full, ...): sysexits' EX_SOFTWARE.
  unexpected: 70,
  // Ctrl-C (128 + SIGINT): the batch keeps running on the server.
  interrupted: 130,
} as const;

export const exitCodeHelp = `Exit codes:
  0    done; every task succeeded (submit/watch), or the command did what it says
  1    the batch ended with failed or canceled tasks, or refused items
  2    usage error: bad flags or arguments, unreadable input
  3    the API answered with an error (auth, not found, validation, server error)
  4    the API could not be reached (is the stack running? \`npm start\`)
  5    a downloaded image did not match the manifest's sha256
  70   unexpected local failure (disk full, a bug): the message says what
  130  interrupted (Ctrl-C); the batch keeps running on the server`;

// Every failure the CLI reports on its own carries its exit code and a message for a person.
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export const usageError = (message: string, hint?: string) => new CliError(exitCodes.usage, message, hint);
