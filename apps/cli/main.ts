import { parseArgs, type ParseArgsConfig } from "node:util";
import { commandHelp, mainHelp } from "./cli-help.ts";
import { apiTargetFrom, batchOptionsFrom, intervalFrom, positiveInt } from "./cli-options.ts";
import { cliCommand } from "./cli-name.ts";
import { CliError, exitCodes, usageError } from "./exit-codes.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

const connection: Options = { "api-url": { type: "string" }, "api-key": { type: "string" }, help: { type: "boolean", short: "h" } };
const expand: Options = {
  up: { type: "string" },
  down: { type: "string" },
  left: { type: "string" },
  right: { type: "string" },
  prompt: { type: "string" },
  n: { type: "string" },
  name: { type: "string" },
  "callback-url": { type: "string" },
  format: { type: "string" },
};
const optionsOf: Record<string, Options> = {
  submit: { ...connection, ...expand, "no-watch": { type: "boolean" }, interval: { type: "string" } },
  estimate: { ...connection, ...expand },
  status: { ...connection, json: { type: "boolean" } },
  watch: { ...connection, interval: { type: "string" } },
  download: { ...connection, out: { type: "string", short: "o" }, concurrency: { type: "string" } },
  cancel: { ...connection },
  retry: { ...connection, "no-watch": { type: "boolean" }, interval: { type: "string" } },
};

const oneArgument = (command: string, positionals: string[], what: string) => {
  if (positionals.length !== 1) throw usageError(`${command} takes exactly one ${what}; got ${positionals.length}.`, `See: ${cliCommand()} ${command} --help`);
  return positionals[0]!;
};

const formatFrom = (value: unknown) => {
  if (value === undefined) return undefined;
  if (value !== "csv" && value !== "ndjson") throw usageError(`--format must be csv or ndjson; got ${JSON.stringify(value)}.`);
  return value;
};

const run = async (argv: string[]): Promise<number> => {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    // Asked for: stdout and success. Not asked for (no command): stderr and a usage error.
    (command === undefined ? process.stderr : process.stdout).write(`${mainHelp}\n`);
    return command === undefined ? exitCodes.usage : exitCodes.ok;
  }
  const options = optionsOf[command];
  if (!options) throw usageError(`Unknown command ${JSON.stringify(command)}.`, `Commands: submit, estimate, status, watch, download, cancel, retry (${cliCommand()} --help).`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError((error as Error).message, `See: ${cliCommand()} ${command} --help`);
  }
  const { values: flags, positionals } = parsed;
  if (flags.help) {
    process.stdout.write(`${commandHelp[command]}\n`);
    return exitCodes.ok;
  }
  const { terminalOutput } = await import("./watch-batch.ts");
  const out = terminalOutput();
  // Loaded only for a command that runs: `--help` and usage errors answer at once.
  const { controlCommand, downloadCommand, estimateCommand, statusCommand, submitCommand, watchCommand } = await import("./commands.ts");
  switch (command) {
    case "submit":
    case "estimate": {
      const input = oneArgument(command, positionals, "input (a folder, a .csv or .ndjson file, or -)");
      const batchOptions = batchOptionsFrom(flags);
      const format = formatFrom(flags.format);
      const target = apiTargetFrom(flags, process.env);
      if (command === "estimate") return estimateCommand(target, { input, format, options: batchOptions }, out);
      return submitCommand(target, { input, format, options: batchOptions, watch: !flags["no-watch"], intervalMs: intervalFrom(flags) }, out);
    }
    case "status":
      return statusCommand(apiTargetFrom(flags, process.env), oneArgument(command, positionals, "batch id"), flags.json === true, out);
    case "watch":
      return watchCommand(apiTargetFrom(flags, process.env), oneArgument(command, positionals, "batch id"), intervalFrom(flags), out);
    case "download": {
      const batchId = oneArgument(command, positionals, "batch id");
      if (typeof flags.out !== "string" || flags.out === "") throw usageError("download needs --out <dir>.", `See: ${cliCommand()} download --help`);
      const concurrency = flags.concurrency === undefined ? 4 : positiveInt("a whole number", 32).safeParse(Number(flags.concurrency)).data;
      if (concurrency === undefined) throw usageError(`--concurrency must be a whole number from 1 to 32; got ${JSON.stringify(flags.concurrency)}.`);
      return downloadCommand(apiTargetFrom(flags, process.env), batchId, flags.out, concurrency, out);
    }
    case "cancel":
    case "retry":
      return controlCommand(apiTargetFrom(flags, process.env), command, oneArgument(command, positionals, "batch id"), !flags["no-watch"], intervalFrom(flags), out);
  }
  return exitCodes.usage;
};

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (error) {
  if (error instanceof CliError) {
    process.stderr.write(`error: ${error.message}\n${error.hint ? `${error.hint}\n` : ""}`);
    process.exitCode = error.exitCode;
  } else {
    process.stderr.write(`error: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = exitCodes.unexpected;
  }
}
