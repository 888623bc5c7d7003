import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { defaultApiPort } from "../domain/config/defaults.ts";
import { ConfigError, envPort, parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv } from "../domain/config/shared-env.schema.ts";
import { prepareDatabase } from "../domain/db/prepare-database.ts";
import { providerEnv, resolveProviderConfig } from "../domain/provider/provider-config.schema.ts";

// `npm start`: the whole system on one machine. Prepares the database, then runs the API, the
// worker and (when no provider key is configured) the provider simulator as separate processes,
// exactly as they would be deployed.
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const LOCAL_KEY = "local-dev-key-0123456789";

const env = (() => {
  try {
    return parseEnv(
      z.object({ ...databaseEnv, ...providerEnv, PORT: envPort.default(defaultApiPort), BOOTSTRAP_API_KEY: z.string().default(LOCAL_KEY) }),
      process.env,
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78);
    }
    throw error;
  }
})();

const provider = resolveProviderConfig(env);
const useSimulator = provider.kind === "simulator";
const apiUrl = `http://127.0.0.1:${env.PORT}`;

const db = await prepareDatabase(env.DATABASE_URL);
console.log(`[stack] database ${new URL(env.DATABASE_URL).pathname.slice(1)}: ${db.created ? "created, " : ""}${db.applied}`);

const shared: NodeJS.ProcessEnv = {
  ...process.env,
  BOOTSTRAP_API_KEY: env.BOOTSTRAP_API_KEY,
  PUBLIC_BASE_URL: process.env.PUBLIC_BASE_URL ?? apiUrl,
  // The local simulator and its result images live on loopback.
  ...(useSimulator
    ? {
        PROVIDER: "simulator",
        ALLOWED_PRIVATE_HOSTS: [process.env.ALLOWED_PRIVATE_HOSTS, "127.0.0.1", "localhost"].filter(Boolean).join(","),
      }
    : {}),
};

const children = new Map<string, ChildProcess>();
let stopping = false;

const prefixLines = (name: string, stream: NodeJS.ReadableStream, out: NodeJS.WritableStream) => {
  let buffer = "";
  stream.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) out.write(`[${name}] ${line}\n`);
  });
};

const launch = (name: string, entry: string) => {
  const child = spawn(process.execPath, [`${repoRoot}node_modules/tsx/dist/cli.mjs`, entry], {
    cwd: repoRoot,
    env: shared,
    stdio: ["ignore", "pipe", "pipe"],
  });
  prefixLines(name, child.stdout!, process.stdout);
  prefixLines(name, child.stderr!, process.stderr);
  child.on("exit", (code, signal) => {
    children.delete(name);
    if (!stopping) {
      console.error(`[stack] ${name} exited (${signal ?? code}); stopping everything`);
      void stopAll(1);
    }
  });
  children.set(name, child);
};

const stopAll = async (code: number) => {
  stopping = true;
  const exits = [...children.values()].map((child) => new Promise((resolve) => child.once("exit", resolve)));
  for (const child of children.values()) child.kill("SIGTERM");
  const deadline = setTimeout(() => {
    for (const child of children.values()) child.kill("SIGKILL");
  }, 15_000);
  await Promise.all(exits);
  clearTimeout(deadline);
  process.exit(code);
};
process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));

if (useSimulator) launch("simulator", "apps/simulator/main.ts");
launch("api", "apps/api/main.ts");
launch("worker", "apps/worker/main.ts");

const waitFor = async (url: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !stopping) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
};

if (await waitFor(`${apiUrl}/readyz`)) {
  console.log(`
[stack] ready
  api        ${apiUrl}   (drop-in: ${apiUrl}/kling/v1/images/editing/expand, native: ${apiUrl}/v1/tasks)
  callbacks  ${shared.PUBLIC_BASE_URL}/webhooks/kling/...
  provider   ${useSimulator ? `simulator at ${provider.baseUrl} (admin: ${provider.baseUrl}/_sim/config)` : `${provider.kind} at ${provider.baseUrl}`}
  api key    ${env.BOOTSTRAP_API_KEY === LOCAL_KEY ? `${LOCAL_KEY} (local default; set BOOTSTRAP_API_KEY to change)` : "BOOTSTRAP_API_KEY"}
  try        curl -s -H 'Authorization: Bearer ${env.BOOTSTRAP_API_KEY === LOCAL_KEY ? LOCAL_KEY : "$BOOTSTRAP_API_KEY"}' ${apiUrl}/v1/tasks
  stop       Ctrl-C
`);
} else if (!stopping) {
  console.error("[stack] the API did not become ready within 60 s");
  await stopAll(1);
}
