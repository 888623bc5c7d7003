import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// One account opened many uploads that declare 4 MiB and trickle a few bytes: it held the whole
// intake body budget, and every other account's creates were refused for minutes. Each account now
// has a share of the budget (the rest stays for the others), and a body arriving slower than the
// minimum rate loses its reservation with a 408.
const MiB = 1024 * 1024;
const windowMs = 2_000;

type Final = { status: number; text: string; sinceHeadMs: number };
type SlowUpload = {
  interim: number | undefined;
  final: Promise<Final>;
  // Whether an answer (a final status line) has arrived yet.
  answered: () => boolean;
  // From now on, trickle: 100 bytes every 200 ms (500 B/s, far below the minimum rate).
  slowDown: () => void;
};

// A raw client that sends the head with Expect: 100-continue and, after the server's go-ahead,
// sends its body at one of two paces until it is answered: "steady" (8 KiB every 200 ms: each
// window sees many times the minimum rate, and one tick alone is enough, so a stalled moment does
// not cut it; 4 MiB would take ~100 s) or "trickle". A steady upload holds its reservation for as
// long as the test needs, whatever the machine's load; it is slowed down when the test says so.
const openSockets = new Set<net.Socket>();

const slowUpload = (baseUrl: string, key: string, pace: "steady" | "trickle"): Promise<SlowUpload> =>
  new Promise((resolveStart, rejectStart) => {
    const url = new URL(baseUrl);
    const socket = net.connect(Number(url.port), url.hostname);
    openSockets.add(socket);
    socket.on("error", () => undefined);
    let received = "";
    let sender: NodeJS.Timeout | undefined;
    let trickling = pace === "trickle";
    let answered = false;
    let headSentAt = 0;
    let resolveFinal!: (v: Final) => void;
    const final = new Promise<Final>((r) => (resolveFinal = r));
    let started = false;
    const send = () => socket.write(trickling ? "x".repeat(100) : "x".repeat(8 * 1024));
    const slowDown = () => {
      trickling = true;
    };
    const start = (interim: number | undefined) => {
      if (started) return;
      started = true;
      resolveStart({ interim, final, answered: () => answered, slowDown });
    };
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      for (;;) {
        const end = received.indexOf("\r\n\r\n");
        if (end === -1) return;
        const status = Number(received.slice(0, end).split(" ")[1]);
        if (status === 100) {
          received = received.slice(end + 4);
          start(100);
          sender = setInterval(send, 200);
          continue;
        }
        // A final answer: its body follows (JSON, short); wait for the connection to close or a moment.
        answered = true;
        clearInterval(sender);
        start(undefined);
        const done = () => resolveFinal({ status, text: received.slice(end + 4), sinceHeadMs: Date.now() - headSentAt });
        socket.once("close", done);
        setTimeout(() => {
          socket.destroy();
        }, 500).unref();
        return;
      }
    });
    socket.once("close", () => {
      openSockets.delete(socket);
      clearInterval(sender);
      if (!started) rejectStart(new Error(`closed before any answer: ${JSON.stringify(received)}`));
    });
    // Taken before the head is written: the server's window starts after it has read the head.
    headSentAt = Date.now();
    socket.write(
      [
        "POST /v1/tasks HTTP/1.1",
        `host: ${url.host}`,
        `authorization: Bearer ${key}`,
        "content-type: application/json",
        `content-length: ${4 * MiB}`,
        "expect: 100-continue",
        "",
        "",
      ].join("\r\n"),
    );
  });

describe("a slow-body flood from one account", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      withWorker: false,
      apiEnv: { INTAKE_BODY_BUDGET_BYTES: String(64 * MiB), INTAKE_BODY_RATE_WINDOW_MS: String(windowMs), INTAKE_BODY_MIN_BYTES_PER_SECOND: "4096" },
    });
  });
  afterAll(async () => {
    for (const socket of openSockets) socket.destroy();
    await stack?.stop();
  });

  it("when one account holds 16 open 4 MiB uploads, then another account's creates are all accepted while they hold, and once they trickle they get 408 after a whole rate window, counted in /metrics", async () => {
    const attacker = await stack.newAccount();
    const victim = await stack.newAccount();
    const refusedBefore = await slowRefusals(stack.api.url);

    // One upload trickles from its go-ahead on (an account's first body is always taken): its
    // 408 must not come before a whole window of too few bytes.
    const trickler = await slowUpload(stack.api.url, attacker.key, "trickle");
    expect(trickler.interim).toBe(100);
    // Every flood connection has its answer from the budget (a go-ahead, or a refusal) before the
    // other account starts: the flood holds all it can.
    const flood = await Promise.all(Array.from({ length: 15 }, () => slowUpload(stack.api.url, attacker.key, "steady")));
    const held = flood.filter((u) => u.interim === 100);
    expect(held.length).toBeGreaterThan(0);

    const image = (await makeImage(300, 300)).toString("base64");
    const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 };
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await call(stack.api.url, "POST", "/v1/tasks", { key: victim.key, body: { image, ...ratios } })).status);
    // Every create is taken on its first try, none told to come back, and all of them while the
    // flood still held its reservations (none of its uploads answered yet): the failure was 503s
    // for minutes. An order, not a time: the steady uploads hold for as long as the creates take.
    expect(statuses).toEqual(Array(8).fill(202));
    expect(held.filter((u) => u.answered())).toEqual([]);

    for (const u of held) u.slowDown();
    const finals = await Promise.all([trickler, ...held].map((u) => u.final));
    for (const f of finals) {
      expect(f.status).toBe(408);
      expect(f.text).toMatch(/slower than 4096 bytes per second/);
    }
    // Not before a whole window of too few bytes: the server's window starts after it read the
    // head, which this clock's start precedes, so a loaded machine only makes this longer.
    expect((await trickler.final).sinceHeadMs).toBeGreaterThanOrEqual(windowMs);
    expect((await slowRefusals(stack.api.url)) - refusedBefore).toBeGreaterThanOrEqual(held.length + 1);

    // The reclaimed budget serves the slow account again once it sends properly.
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key: attacker.key, body: { image, ...ratios } });
    expect(again.status).toBe(202);
  }, 60_000);
});

const slowRefusals = async (baseUrl: string) => {
  const text = (await call(baseUrl, "GET", "/metrics")).body as string;
  const line = text.split("\n").find((l) => l.startsWith('kling_intake_bodies_refused_total{reason="too_slow"}'));
  return line ? Number(line.split(" ")[1]) : 0;
};
