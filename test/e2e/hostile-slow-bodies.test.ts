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
const windowMs = 1_500;

type SlowUpload = { interim: number | undefined; final: Promise<{ status: number; text: string; afterInterimMs: number }> };

// A raw client that sends the head with Expect: 100-continue, and after the server's go-ahead
// trickles 100 bytes every 200 ms (500 B/s, far below the minimum rate) until it is answered.
const openSockets = new Set<net.Socket>();

const slowUpload = (baseUrl: string, key: string): Promise<SlowUpload> =>
  new Promise((resolveStart, rejectStart) => {
    const url = new URL(baseUrl);
    const socket = net.connect(Number(url.port), url.hostname);
    openSockets.add(socket);
    socket.on("error", () => undefined);
    let received = "";
    let trickle: NodeJS.Timeout | undefined;
    let interimAt = 0;
    let resolveFinal!: (v: { status: number; text: string; afterInterimMs: number }) => void;
    const final = new Promise<{ status: number; text: string; afterInterimMs: number }>((r) => (resolveFinal = r));
    let started = false;
    const start = (interim: number | undefined) => {
      if (started) return;
      started = true;
      resolveStart({ interim, final });
    };
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      for (;;) {
        const end = received.indexOf("\r\n\r\n");
        if (end === -1) return;
        const status = Number(received.slice(0, end).split(" ")[1]);
        if (status === 100) {
          received = received.slice(end + 4);
          interimAt = Date.now();
          start(100);
          trickle = setInterval(() => socket.write("x".repeat(100)), 200);
          continue;
        }
        // A final answer: its body follows (JSON, short); wait for the connection to close or a moment.
        clearInterval(trickle);
        start(undefined);
        const done = () => resolveFinal({ status, text: received.slice(end + 4), afterInterimMs: interimAt ? Date.now() - interimAt : 0 });
        socket.once("close", done);
        setTimeout(() => {
          socket.destroy();
        }, 500).unref();
        return;
      }
    });
    socket.once("close", () => {
      openSockets.delete(socket);
      clearInterval(trickle);
      if (!started) rejectStart(new Error(`closed before any answer: ${JSON.stringify(received)}`));
    });
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

  it("when one account holds 16 trickling 4 MiB uploads, then another account's creates are all accepted, and the slow ones get 408 once the rate window passes, counted in /metrics", async () => {
    const attacker = await stack.newAccount();
    const victim = await stack.newAccount();
    const refusedBefore = await slowRefusals(stack.api.url);

    // Every flood connection has its answer from the budget (a go-ahead, or a refusal) before the
    // other account starts: the flood holds all it can.
    const flood = await Promise.all(Array.from({ length: 16 }, () => slowUpload(stack.api.url, attacker.key)));
    const held = flood.filter((u) => u.interim === 100);
    expect(held.length).toBeGreaterThan(0);

    const image = (await makeImage(300, 300)).toString("base64");
    const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 };
    const answers: { status: number; ms: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const started = Date.now();
      const created = await call(stack.api.url, "POST", "/v1/tasks", { key: victim.key, body: { image, ...ratios } });
      answers.push({ status: created.status, ms: Date.now() - started });
    }
    // Every create is taken on its first try, none told to come back; each answered promptly (the
    // bound is generous for a loaded machine: the failure was 503s for minutes, not a slow answer).
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(202));
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(5_000);

    const finals = await Promise.all(held.map((u) => u.final));
    for (const f of finals) {
      expect(f.status).toBe(408);
      expect(f.text).toMatch(/slower than 4096 bytes per second/);
      // Not before a whole window of too few bytes.
      expect(f.afterInterimMs).toBeGreaterThanOrEqual(windowMs * 0.9);
    }
    expect((await slowRefusals(stack.api.url)) - refusedBefore).toBeGreaterThanOrEqual(held.length);

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
