import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "./free-port.ts";

// Debian's PgBouncer (1.18 here; `.ci/run` installs it when missing) in front of a Postgres, in
// transaction mode as production poolers run: no startup parameters beyond the few it tracks, no
// named prepared statements, no LISTEN. Its own ini, port and directory; it refuses to run as root,
// so under root it runs as `postgres`.

export type PgBouncer = {
  port: number;
  // The same database URL, through the bouncer.
  via(databaseUrl: string): string;
  // Its admin console's SHOW <what> (stats, pools, clients, servers, ...).
  show(what: string): Promise<Record<string, unknown>[]>;
  log(): Promise<string>;
  stop(): Promise<void>;
};

export type PgBouncerOptions = {
  // The Postgres behind it (any database URL on that server).
  target: string;
  // Server connections per user and database.
  poolSize?: number;
  // Roles allowed to log in (auth_type trust still wants them listed).
  users?: string[];
};

const binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].find((candidate) => existsSync(candidate));

export const pgbouncerInstalled = () => binary !== undefined;

export const startPgBouncer = async (options: PgBouncerOptions): Promise<PgBouncer> => {
  if (!binary) throw new Error("pgbouncer is not installed (apt-get install -y pgbouncer; .ci/run does it)");
  const target = new URL(options.target);
  const dir = await mkdtemp(path.join(tmpdir(), "kling-pgbouncer-"));
  const port = await freePort();
  const users = [...new Set(["postgres", "root", target.username || "postgres", ...(options.users ?? [])])];
  const ini = path.join(dir, "pgbouncer.ini");
  await writeFile(path.join(dir, "users.txt"), users.map((user) => `"${user}" ""\n`).join(""));
  await writeFile(
    ini,
    [
      "[databases]",
      `* = host=${target.hostname} port=${target.port || 5432}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${path.join(dir, "users.txt")}`,
      "admin_users = postgres",
      "pool_mode = transaction",
      `default_pool_size = ${options.poolSize ?? 20}`,
      "max_client_conn = 1000",
      `logfile = ${path.join(dir, "pgbouncer.log")}`,
      `pidfile = ${path.join(dir, "pgbouncer.pid")}`,
      "",
    ].join("\n"),
  );
  const asRoot = userInfo().uid === 0;
  if (asRoot) {
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
    await chmod(dir, 0o755);
  }
  // A group of its own, so one signal reaches pgbouncer under runuser too.
  const child: ChildProcess = asRoot
    ? spawn("runuser", ["-u", "postgres", "--", binary, ini], { stdio: ["ignore", "pipe", "pipe"], detached: true })
    : spawn(binary, [ini], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, "exit");
  const log = async () => `${output}${await readFile(path.join(dir, "pgbouncer.log"), "utf8").catch(() => "")}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        // gone already
      }
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  const via = (databaseUrl: string) => {
    const url = new URL(databaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String(port);
    return url.toString();
  };
  const show = async (what: string) => {
    const admin = new pg.Client({ connectionString: via(`postgresql://postgres@127.0.0.1/pgbouncer`) });
    await admin.connect();
    try {
      return (await admin.query(`show ${what}`)).rows as Record<string, unknown>[];
    } finally {
      await admin.end();
    }
  };

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited at start:\n${await log()}`);
    try {
      await show("version");
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pgbouncer did not answer within 15 s: ${(error as Error).message}\n${await log()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { port, via, show, log, stop };
};

const postgresUser = async () => {
  const passwd = await readFile("/etc/passwd", "utf8");
  const line = passwd.split("\n").find((entry) => entry.startsWith("postgres:"));
  if (!line) throw new Error("no postgres user to run pgbouncer as (it refuses to run as root)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
};
