import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningApi } from "../../apps/api/api.server.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// DB_PREPARED_STATEMENTS (docs/scale-postgres.md): named server-side prepared statements when it is
// true, unnamed ones otherwise (a pooler in transaction mode before PgBouncer 1.21 would hand the
// next transaction a server connection that lacks the name). What decides is what reaches the
// wire, so the API and the worker talk to Postgres through a tap that reads the client's side of
// the protocol: each Parse (with the statement's name, empty when unnamed) and each Bind (with the
// name it runs). A name bound again on its connection without a new Parse ran the statement the
// server kept, which is the point of the setting.
// (PgBouncer here is Debian's 1.18, which has no prepared statements in transaction mode: the
// pooled path is covered with the setting off, by test/e2e/pgbouncer.test.ts.)

type WireTap = {
  via(url: string): string;
  parses: { connection: number; name: string; text: string }[];
  binds: { connection: number; name: string }[];
  stop(): Promise<void>;
};

const cstring = (body: Buffer, from: number) => {
  const end = body.indexOf(0, from);
  return { value: body.toString("utf8", from, end), next: end + 1 };
};

const startWireTap = async (databaseUrl: string): Promise<WireTap> => {
  const target = new URL(databaseUrl);
  const parses: WireTap["parses"] = [];
  const binds: WireTap["binds"] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    const connection = ++connections;
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => sockets.delete(socket));
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    // The first message (startup) has no type byte; every later one is a type, a length, a body.
    let pending = Buffer.alloc(0);
    let started = false;
    client.on("data", (chunk: Buffer) => {
      upstream.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (!started) {
          if (pending.length < 4 || pending.length < pending.readInt32BE(0)) return;
          pending = pending.subarray(pending.readInt32BE(0));
          started = true;
          continue;
        }
        if (pending.length < 5 || pending.length < 1 + pending.readInt32BE(1)) return;
        const type = String.fromCharCode(pending[0]!);
        const body = pending.subarray(5, 1 + pending.readInt32BE(1));
        if (type === "P") {
          const name = cstring(body, 0);
          parses.push({ connection, name: name.value, text: cstring(body, name.next).value });
        } else if (type === "B") {
          const portal = cstring(body, 0);
          binds.push({ connection, name: cstring(body, portal.next).value });
        }
        pending = pending.subarray(1 + pending.readInt32BE(1));
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    via: (url) => {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    parses,
    binds,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

let stack: Stack;
let image: string;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };
const taps: WireTap[] = [];

beforeAll(async () => {
  stack = await startStack({ withWorker: false });
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(async () => {
  await stack?.stop();
  await Promise.all(taps.map((tap) => tap.stop()));
});

// An API (and a worker, when asked) whose every Postgres connection goes through a fresh tap.
const tapped = async (env: Record<string, string>, withWorker: boolean) => {
  const tap = await startWireTap(stack.env.databaseUrl);
  taps.push(tap);
  const database = { DATABASE_URL: tap.via(stack.env.databaseUrl), DATABASE_DIRECT_URL: tap.via(stack.env.databaseUrl), ...env };
  const api: RunningApi = await stack.startApi(database);
  if (withWorker) await stack.startWorker({ ...database, PUBLIC_BASE_URL: api.url });
  return { tap, api };
};

const createTasks = async (api: RunningApi, key: string, count: number) =>
  Promise.all(
    Array.from({ length: count }, async () => {
      const created = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
      expect(created.status, JSON.stringify(created.body)).toBe(202);
      return created.body.id as string;
    }),
  );

const countBy = <T>(items: T[], key: (item: T) => string) => {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
};

describe("DB_PREPARED_STATEMENTS", () => {
  it("when it is true, then the API's and the worker's statements reach Postgres named, each parsed once per connection and run again by name, and tasks still run end to end", async () => {
    const { tap, api } = await tapped({ DB_PREPARED_STATEMENTS: "true" }, true);
    const { key } = await stack.newAccount();
    const ids = await createTasks(api, key, 4);
    for (const id of ids) await waitForTask(api.url, key, id, ["succeeded"], 30_000);

    const named = tap.parses.filter((p) => p.name !== "");
    expect(named.length).toBeGreaterThan(10);
    for (const p of named) expect(p.name).toMatch(/^k_[A-Za-z0-9_-]{24}$/);
    // Every parameterised statement was named: none took the unnamed path beside the setting.
    expect(tap.parses.filter((p) => p.name === "").map((p) => p.text)).toEqual([]);
    // pg parses a name once per connection; every later run is a Bind of the name alone, which the
    // server answers from the statement it kept (a missing one would have failed the task).
    const parsed = countBy(named, (p) => `${p.connection}/${p.name}`);
    expect([...parsed.values()].every((n) => n === 1)).toBe(true);
    const reran = [...countBy(tap.binds.filter((b) => b.name !== ""), (b) => `${b.connection}/${b.name}`)].filter(([at, n]) => n > (parsed.get(at) ?? 0));
    expect(reran.length).toBeGreaterThan(0);
  });

  it("when it is left unset, then every statement reaches Postgres unnamed", async () => {
    const { tap, api } = await tapped({}, false);
    const { key } = await stack.newAccount();
    const [id] = await createTasks(api, key, 1);
    expect((await call(api.url, "GET", `/v1/tasks/${id}`, { key })).status).toBe(200);
    expect(tap.parses.length).toBeGreaterThan(0);
    expect(tap.parses.filter((p) => p.name !== "")).toEqual([]);
    expect(tap.binds.filter((b) => b.name !== "")).toEqual([]);
  });
});
