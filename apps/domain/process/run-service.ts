import { ConfigError } from "../config/parse-env.ts";
import { runUntilSignal } from "./run-until-signal.ts";

// The shape of every app's main.ts: parse config once (a bad variable exits 78, EX_CONFIG, with
// its name), start, print one line a person can read, then stop gracefully on a signal.
export const runService = async <C, S extends { stop: () => Promise<void> }>(
  name: string,
  parseConfig: (env: NodeJS.ProcessEnv) => C,
  start: (config: C) => Promise<S>,
  describe: (service: S) => string,
) => {
  let config: C;
  try {
    config = parseConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${name}: ${error.message}`);
      process.exit(78);
    }
    throw error;
  }
  const service = await start(config);
  console.log(describe(service));
  runUntilSignal(name, service.stop);
};
