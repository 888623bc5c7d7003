import { randomUUID } from "node:crypto";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { EX_PORT_IN_USE } from "../../apps/domain/process/run-service.ts";
import { superviseChild } from "../../apps/local-stack/child-supervisor.ts";
import { dropDatabases } from "../support/databases.ts";
import { baseEnv, descendants, freePort, identify, isAlive, killIfAlive, spawnApp, spawnCaptured, within, type Captured, type ProcId } from "./process-kit.ts";

// `npm start` where its ports are already taken: by some other program, or by another stack that
// answers /readyz as ours would. It must stop quickly, say which port and who holds it, never
// print "ready" for someone else's server, and never restart a child that cannot listen.
// Generous for npm + tsx starting on a loaded machine; a crash-looping stack never exits at all.
const EXIT_BOUND_MS = 45_000;

describe("npm start with its ports taken", () => {
  const runId = randomUUID().slice(0, 8);
  const databasePrefix = `kling_ports_${runId}`;
  const serverUrl = new URL(inject("templateDatabaseUrl"));
  const holders: (Server | HttpServer)[] = [];
  const runs: { npm: Captured; proc: ProcId }[] = [];
  const dirs: string[] = [];
  const holderSockets = new Set<Socket>();

  afterAll(async () => {
    for (const run of runs) for (const proc of [run.proc, ...descendants(run.npm.pid)]) killIfAlive(proc);
    // A probe's connection (keep-alive, or one left by a killed process) would hold a server's close
    // open for ever: every connection a holder accepted is destroyed first.
    for (const socket of holderSockets) socket.destroy();
    await Promise.all(holders.map((h) => new Promise((resolve) => h.close(resolve))));
    await dropDatabases(serverUrl.toString(), databasePrefix);
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  const hold = async <S extends Server | HttpServer>(server: S, port: number) => {
    holders.push(server);
    server.on("connection", (socket: Socket) => {
      holderSockets.add(socket);
      socket.once("close", () => holderSockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    return server;
  };

  const npmStart = async (label: string, ports: { api: number; simulator: number }) => {
    const database = new URL(serverUrl);
    database.pathname = `/${databasePrefix}_${label}`;
    const storageDir = await mkdtemp(path.join(tmpdir(), "kling-ports-"));
    dirs.push(storageDir);
    const npm = spawnCaptured("npm", ["start"], {
      env: {
        ...baseEnv(),
        PORT: String(ports.api),
        SIMULATOR_PORT: String(ports.simulator),
        DATABASE_URL: database.toString(),
        REDIS_URL: inject("redisUrl"),
        QUEUE_PREFIX: `ports${runId}${label}`,
        STORAGE_DIR: storageDir,
        LOG_FORMAT: "json",
      },
      detached: true,
    });
    const run = { npm, proc: identify(npm.pid)! };
    runs.push(run);
    return run;
  };

  const expectStopped = async (run: { npm: Captured; proc: ProcId }) => {
    const exit = await Promise.race([run.npm.exited, new Promise<"running">((resolve) => setTimeout(() => resolve("running"), EXIT_BOUND_MS))]);
    expect(exit, `npm start still running after ${EXIT_BOUND_MS} ms:\n${run.npm.output()}`).not.toBe("running");
    expect(exit, run.npm.output()).not.toEqual({ code: 0, signal: null });
    expect(run.npm.output()).not.toContain("[stack] ready");
    expect(run.npm.output()).not.toMatch(/restarting in/);
    await within("nothing of the stack left", 10_000, () => !isAlive(run.proc) && descendants(run.npm.pid).length === 0);
  };

  it.concurrent("when another program listens on the simulator's port, then it stops at once naming the port, the variable and the holder's pid", async ({ expect }) => {
    // Held before the other is picked: two free-port picks in a row may name the same port.
    const simulator = await freePort();
    await hold(createServer((socket) => socket.end()), simulator);
    const ports = { api: await freePort(), simulator };
    const run = await npmStart("tcp", ports);
    await expectStopped(run);
    const output = run.npm.output();
    expect(output).toContain(`port ${ports.simulator} (SIMULATOR_PORT`);
    expect(output).toContain(`pid ${process.pid}`);
  }, 90_000);

  it.concurrent("when another stack already answers /readyz on the API's port, then it does not call that stack ready: it stops and says who answers there", async ({ expect }) => {
    const apiPort = await freePort();
    await hold(
      createHttpServer((req, res) => {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ready", checks: {} }));
      }),
      apiPort,
    );
    const ports = { api: apiPort, simulator: await freePort() };
    const run = await npmStart("http", ports);
    await expectStopped(run);
    const output = run.npm.output();
    expect(output).toContain(`port ${ports.api} (PORT`);
    expect(output).toContain(`pid ${process.pid}`);
    expect(output).toMatch(/answers HTTP/);
  }, 90_000);
});

describe("an app whose port is taken", () => {
  it("when the API cannot listen because the port is in use, then it exits with EX_PORT_IN_USE and a line naming the port", async () => {
    const port = await freePort();
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", () => resolve()));
    const storageDir = await mkdtemp(path.join(tmpdir(), "kling-ports-api-"));
    try {
      const api = spawnApp("apps/api/main.ts", {
        PORT: String(port),
        // Never connected to: the port is taken before the API's first query.
        DATABASE_URL: Object.assign(new URL(inject("templateDatabaseUrl")), { pathname: "/kling_ports_never_created" }).toString(),
        REDIS_URL: inject("redisUrl"),
        QUEUE_PREFIX: `portsapi${randomUUID().slice(0, 8)}`,
        STORAGE_DIR: storageDir,
        LOG_FORMAT: "json",
        SERVER_KEY: "test-server-key-0123456789-abcdefghijklmnop",
      });
      expect(await api.exited).toEqual({ code: EX_PORT_IN_USE, signal: null });
      expect(api.output()).toContain(`127.0.0.1:${port} is in use`);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
      await rm(storageDir, { recursive: true, force: true });
    }
  }, 60_000);

  it("when a supervised child exits with EX_PORT_IN_USE, then the supervisor does not restart it and reports it", async () => {
    const port = await freePort();
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", () => resolve()));
    const reported: string[] = [];
    const lines: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const child = superviseChild({
      name: "fixture",
      nodeArgs: ["--import", "tsx", "test/process/fixtures/fixture-service.main.ts"],
      cwd: path.resolve(import.meta.dirname, "../.."),
      env: { ...baseEnv(), FIXTURE_LISTEN_PORT: String(port) },
      say: (line) => lines.push(line),
      onConfigError: (name) => reported.push(`config ${name}`),
      onPortInUse: (name) => {
        reported.push(`port ${name}`);
        done();
      },
    });
    await finished;
    expect(reported).toEqual(["port fixture"]);
    expect(child.restarts()).toBe(0);
    expect(lines.join("\n")).not.toMatch(/restarting/);
    await child.stop(5_000);
    await new Promise((resolve) => holder.close(resolve));
  }, 30_000);
});
