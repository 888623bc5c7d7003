import { fileURLToPath } from "node:url";
import { ConfigError } from "../domain/config/parse-env.ts";
import { prepareDatabase } from "../domain/db/prepare-database.ts";
import { directDatabaseUrl } from "../domain/config/shared-env.schema.ts";
import { localUrlFor } from "../domain/process/listen-url.ts";
import { watchParentPid } from "../domain/process/parent-watch.ts";
import { EX_CONFIG, EX_PORT_IN_USE } from "../domain/process/run-service.ts";
import { resolveProviderConfig } from "../domain/provider/provider-config.schema.ts";
import { builtEntry } from "../../ops/build/build-apps.mjs";
import { superviseChild, type SupervisedChild } from "./child-supervisor.ts";
import { localTwoRoutes, stackPrivateHosts } from "./local-routes.ts";
import { takenPorts, type StackPort } from "./port-holder.ts";
import { readyBanner } from "./ready-banner.ts";
import { parseStackConfig, type StackConfig } from "./stack.config.ts";

// `npm start`: the whole system on one machine. Prepares the database, then runs the API, the
// worker and (when no provider key is configured) the provider simulator as separate processes,
// exactly as they would be deployed, restarts any that crashes, and stops them all when it is
// stopped, by a signal or by its parent (npm) going away.
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const say = (line: string) => console.log(`[stack] ${line}`);
// Longer than the apps' own drain deadline (15 s), so they get to finish theirs.
const STOP_DEADLINE_MS = 20_000;

let config: StackConfig;
try {
  config = parseStackConfig(process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(EX_CONFIG);
}

const apiUrl = localUrlFor(config.HOST, config.PORT);
const publicBaseUrl = config.PUBLIC_BASE_URL ?? apiUrl;
// A HOST that is neither loopback nor a wildcard is not reachable on 127.0.0.1.
const simulatorUrl = config.SIMULATOR_URL ?? localUrlFor(config.HOST, config.SIMULATOR_PORT);
const provider = resolveProviderConfig({ ...config, SIMULATOR_URL: simulatorUrl });
const useSimulator = provider.kind === "simulator" && config.PROVIDER_ROUTES === undefined;
const twoRoutes = useSimulator && config.LOCAL_ROUTES === 2 ? localTwoRoutes(config, simulatorUrl) : undefined;

const childEnv: NodeJS.ProcessEnv = {
  ...process.env,
  BOOTSTRAP_API_KEY: config.BOOTSTRAP_API_KEY,
  PUBLIC_BASE_URL: publicBaseUrl,
  // The children write to a pipe (ours); they should format for where we write.
  ...(config.LOG_FORMAT === "auto" && process.stdout.isTTY
    ? { LOG_FORMAT: "pretty", ...(process.env.NO_COLOR === undefined && process.env.FORCE_COLOR === undefined ? { FORCE_COLOR: "1" } : {}) }
    : {}),
  // The local simulator and its result images live on this machine.
  ...(useSimulator
    ? {
        PROVIDER: "simulator",
        SIMULATOR_URL: simulatorUrl,
        // Its port only, not the whole host: the API on the same machine is no image host.
        ALLOWED_PRIVATE_HOSTS: stackPrivateHosts(config, simulatorUrl),
      }
    : {}),
  ...(twoRoutes
    ? {
        PROVIDER: "",
        PROVIDER_ROUTES: twoRoutes.routesJson,
        ALLOWED_PRIVATE_HOSTS: stackPrivateHosts(config, simulatorUrl),
      }
    : {}),
};

let stopping = false;
const children: SupervisedChild[] = [];

// Intake and work first, the simulator last: a draining worker may still be talking to it.
const stopAll = async (reason: string, code: number) => {
  if (stopping) return;
  stopping = true;
  say(`${reason}; stopping`);
  const last = children.filter((c) => c.name.startsWith("simulator"));
  await Promise.all(children.filter((c) => !last.includes(c)).map((c) => c.stop(STOP_DEADLINE_MS)));
  await Promise.all(last.map((c) => c.stop(STOP_DEADLINE_MS)));
  say("stopped");
  process.exit(code);
};

// npm passes SIGINT and SIGTERM on to us; a terminal's Ctrl-C comes both from npm and from the
// terminal, so only a second signal well after the first means "now": it kills the children.
let firstSignalAt = 0;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (stopping && firstSignalAt && Date.now() - firstSignalAt > 1_000) {
      say(`${signal} again; killing the children`);
      for (const child of children) {
        const pid = child.pid();
        try {
          if (pid) process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      process.exit(1);
    }
    firstSignalAt ||= Date.now();
    void stopAll(signal, 0);
  });
}
// npm does not pass SIGHUP on, and a SIGKILLed npm passes nothing: its exit re-parents us.
watchParentPid(() => void stopAll("parent process gone", 0));

// Every port this stack will listen on, checked before anything starts: a taken one stops it here
// with who holds it, rather than as crash-looping children or someone else's /readyz announced
// as ours.
const stackPorts: StackPort[] = [
  { port: config.PORT, variable: "PORT", what: "the API" },
  ...(twoRoutes
    ? twoRoutes.simulators.map((sim) => ({ port: Number(new URL(sim.url).port), variable: sim.name === "simulator-kling" ? "SIMULATOR_PORT" : "SIMULATOR_PORT+1", what: sim.name }))
    : useSimulator
      ? [{ port: config.SIMULATOR_PORT, variable: "SIMULATOR_PORT", what: "the provider simulator" }]
      : []),
];
const refuseTakenPorts = (lines: string[]) => {
  for (const line of lines) say(line);
  say(`stop what holds ${lines.length > 1 ? "them" : "it"}, or choose free ports for this stack: PORT=<n> SIMULATOR_PORT=<m> npm start`);
};
const taken = await takenPorts(config.HOST, stackPorts);
if (taken.length > 0) {
  refuseTakenPorts(taken);
  process.exit(EX_PORT_IN_USE);
}

const db = await prepareDatabase(directDatabaseUrl(config));
say(`database ${new URL(directDatabaseUrl(config)).pathname.slice(1)}: ${db.created ? "created, " : ""}${db.applied}`);

const launch = (name: string, entry: string, env: NodeJS.ProcessEnv = {}) =>
  children.push(
    superviseChild({
      name,
      // The apps run from the build `npm start` made before this process started (ops/build), as
      // they are deployed; the maps point stack traces at the .ts sources.
      nodeArgs: ["--enable-source-maps", builtEntry(entry)],
      cwd: repoRoot,
      env: { ...childEnv, ...env },
      say,
      onConfigError: (child) => void stopAll(`${child} refused its configuration (exit ${EX_CONFIG}; see its lines above)`, EX_CONFIG),
      // Taken between the check above and the child's listen: said the same way, never restarted.
      onPortInUse: async (child) => {
        const own = stackPorts.filter((p) => (child === "api" ? p.what === "the API" : p.what !== "the API"));
        refuseTakenPorts(await takenPorts(config.HOST, own));
        void stopAll(`${child} could not listen: its port is taken`, EX_PORT_IN_USE);
      },
    }),
  );
if (!stopping) {
  if (twoRoutes) for (const sim of twoRoutes.simulators) launch(sim.name, "apps/simulator/main.ts", sim.env);
  else if (useSimulator) launch("simulator", "apps/simulator/main.ts");
  launch("api", "apps/api/main.ts");
  launch("worker", "apps/worker/main.ts");
}

const isReady = async () => {
  try {
    return (await fetch(`${apiUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })).ok;
  } catch {
    return false;
  }
};

// Crashes during start are restarted like any other, so this waits as long as it takes.
const waitStarted = Date.now();
let warned = false;
while (!stopping && !(await isReady())) {
  if (!warned && Date.now() - waitStarted > 60_000) {
    warned = true;
    say(`the API at ${apiUrl} is not ready after 60 s; still waiting (see the lines above)`);
  }
  await new Promise((resolve) => setTimeout(resolve, 250));
}
if (!stopping) {
  const pids = children.map((c) => `${c.name} ${c.pid() ?? "-"}`).join(", ");
  console.log(readyBanner({ config, apiUrl, publicBaseUrl, provider, simulator: useSimulator && !twoRoutes, pids: `stack ${process.pid}, ${pids}` }));
  if (twoRoutes) console.log(twoRoutes.banner);
}
