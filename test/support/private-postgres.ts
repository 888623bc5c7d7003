// A Postgres server of the test's own (initdb in a temporary directory, a port of FREE_PORT_RANGE),
// for what the shared one must never see: being killed mid-work. `crash` is an immediate stop
// (SIGQUIT to the postmaster: no checkpoint, WAL not yet flushed is gone, as after a crash of the
// server); `start` brings it back through crash recovery. Run as the `postgres` user when the test
// runs as root (initdb and postgres refuse root). The server binaries: PG_BINDIR, else pg_config's.
import { execFile } from "node:child_process";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./free-port.ts";

const run = promisify(execFile);

export type PrivatePostgres = {
  // postgresql://postgres@127.0.0.1:<port> (no database: append /<name>).
  serverUrl: string;
  crash: () => Promise<void>;
  start: () => Promise<void>;
  stop: () => Promise<void>;
};

const binDir = async () => process.env.PG_BINDIR ?? (await run("pg_config", ["--bindir"])).stdout.trim();

// `settings`: server settings of this instance only (-c name=value).
export const startPrivatePostgres = async (settings: Record<string, string> = {}): Promise<PrivatePostgres> => {
  const bin = await binDir();
  const dir = await mkdtemp(path.join(tmpdir(), "kling-private-pg-"));
  const asRoot = process.getuid?.() === 0;
  const as = async (command: string, args: string[]) => (asRoot ? run("runuser", ["-u", "postgres", "--", command, ...args]) : run(command, args));
  if (asRoot) {
    const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
    await chown(dir, uid, uid);
  }
  const data = path.join(dir, "data");
  await as(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]);
  const port = await freePort();
  const options = [`-p ${port}`, `-k ${dir}`, "-c listen_addresses=127.0.0.1", ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(" ");
  const pgCtl = (args: string[]) => as(path.join(bin, "pg_ctl"), ["-D", data, ...args]);
  const start = async () => {
    await pgCtl(["-l", path.join(dir, "log"), "-w", "-t", "120", "-o", options, "start"]);
  };
  await start();
  return {
    serverUrl: `postgresql://postgres@127.0.0.1:${port}`,
    crash: async () => {
      await pgCtl(["-m", "immediate", "stop"]);
    },
    start,
    stop: async () => {
      await pgCtl(["-m", "immediate", "stop"]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
};
