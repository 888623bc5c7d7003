import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./free-port.ts";

const run = promisify(execFile);

// A real Redis Cluster of three masters (no replicas) from the machine's redis-server, on free
// ports in a temp dir of its own (STACK.md "Many machines on one machine"). A test may move a hash
// slot between nodes, or restart a node empty (its cluster config kept, its data gone: a node
// without persistence restarted by its supervisor).
export type RedisClusterHandle = {
  // host:port,host:port,host:port: what REDIS_CLUSTER_NODES takes.
  nodes: string;
  ports: number[];
  // The node (index) serving a slot, and the slot of a key.
  ownerOf(slot: number): Promise<number>;
  slotOf(key: string): Promise<number>;
  // Moves one slot with its keys to another node (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE).
  moveSlot(slot: number, to: number): Promise<void>;
  restartEmpty(index: number): Promise<void>;
  // A client on one node (not cluster-aware): INFO, CLUSTER commands.
  node(index: number): Redis;
  stop(): Promise<void>;
};

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

// Each node listens on two ports, its clients' and its cluster bus (`cluster-port`; by default
// port + 10000, which a FREE_PORT_RANGE need not hold): both come from freePort, so a shared machine's
// ranges are kept to.
const freePortNotIn = async (taken: Set<number>) => {
  for (let i = 0; i < 50; i++) {
    const port = await freePort();
    if (!taken.has(port)) return port;
  }
  throw new Error("no free port for a cluster node");
};

const until = async (what: string, check: () => Promise<boolean>, ms = 20_000) => {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`redis cluster: ${what} not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

export const startRedisCluster = async (): Promise<RedisClusterHandle> => {
  const dir = await mkdtemp(path.join(tmpdir(), "kling-redis-cluster-"));
  const taken = new Set<number>();
  const ports: number[] = [];
  const busPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePortNotIn(taken);
    taken.add(port);
    const busPort = await freePortNotIn(taken);
    taken.add(busPort);
    ports.push(port);
    busPorts.push(busPort);
  }
  const children: (ChildProcess | undefined)[] = [];
  const clients: (Redis | undefined)[] = [];

  const launch = async (index: number) => {
    const port = ports[index]!;
    const proc = spawn(
      "redis-server",
      [
        "--port", String(port),
        "--cluster-port", String(busPorts[index]!),
        "--bind", "127.0.0.1",
        "--dir", dir,
        "--cluster-enabled", "yes",
        "--cluster-config-file", `nodes-${port}.conf`,
        "--cluster-node-timeout", "2000",
        "--save", "",
        "--appendonly", "no",
        "--dbfilename", `dump-${port}.rdb`,
        "--loglevel", "warning",
      ],
      { stdio: "ignore" },
    );
    live.add(proc);
    void once(proc, "exit").then(() => live.delete(proc));
    children[index] = proc;
    await until(`node ${port} answering`, async () => (await node(index).ping()) === "PONG");
  };
  const node = (index: number) => {
    let client = clients[index];
    if (!client) {
      client = new Redis({ port: ports[index]!, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      client.on("error", () => undefined);
      clients[index] = client;
    }
    return client;
  };
  const clusterOk = (index: number) => async () => /cluster_state:ok/.test(String(await node(index).call("CLUSTER", "INFO")));
  const idOf = async (index: number) => String(await node(index).call("CLUSTER", "MYID"));

  try {
    for (let i = 0; i < 3; i++) await launch(i);
    await run("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"]);
    for (let i = 0; i < 3; i++) await until("cluster_state:ok", clusterOk(i));
  } catch (error) {
    for (const proc of children) proc?.kill("SIGKILL");
    throw error;
  }

  const ownerOf = async (slot: number) => {
    const slots = (await node(0).call("CLUSTER", "SLOTS")) as [number, number, [string, number, string]][];
    for (const [from, to, [, port]] of slots) if (slot >= from && slot <= to) return ports.indexOf(Number(port));
    throw new Error(`slot ${slot} has no owner`);
  };

  return {
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(","),
    ports,
    ownerOf,
    slotOf: async (key) => Number(await node(0).call("CLUSTER", "KEYSLOT", key)),
    moveSlot: async (slot, to) => {
      const from = await ownerOf(slot);
      if (from === to) return;
      const [fromId, toId] = [await idOf(from), await idOf(to)];
      await node(to).call("CLUSTER", "SETSLOT", slot, "IMPORTING", fromId);
      await node(from).call("CLUSTER", "SETSLOT", slot, "MIGRATING", toId);
      for (;;) {
        const keys = (await node(from).call("CLUSTER", "GETKEYSINSLOT", slot, 100)) as string[];
        if (keys.length === 0) break;
        await node(from).call("MIGRATE", "127.0.0.1", ports[to]!, "", 0, 10_000, "REPLACE", "KEYS", ...keys);
      }
      // The new owner first, then the old one, then the rest (Redis' own resharding order).
      for (const index of [to, from, ...[0, 1, 2].filter((i) => i !== to && i !== from)]) {
        await node(index).call("CLUSTER", "SETSLOT", slot, "NODE", toId);
      }
      await until("slot move seen by every node", async () => {
        for (let i = 0; i < 3; i++) {
          const slots = (await node(i).call("CLUSTER", "SLOTS")) as [number, number, [string, number]][];
          const owner = slots.find(([a, b]) => slot >= a && slot <= b);
          if (!owner || Number(owner[2][1]) !== ports[to]) return false;
        }
        return true;
      });
    },
    restartEmpty: async (index) => {
      const proc = children[index];
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await once(proc, "exit");
      }
      clients[index]?.disconnect();
      clients[index] = undefined;
      // Its nodes.conf stays (same id, same slots); there is no data file: it comes back empty.
      await launch(index);
      for (let i = 0; i < 3; i++) await until("cluster_state:ok after the restart", clusterOk(i));
    },
    node,
    stop: async () => {
      for (const client of clients) client?.disconnect();
      await Promise.all(
        children.map(async (proc) => {
          if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
          proc.kill("SIGKILL");
          await once(proc, "exit");
        }),
      );
      await rm(dir, { recursive: true, force: true });
    },
  };
};
