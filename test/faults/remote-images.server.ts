import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

// What a remote image host answers. `good` serves a valid image; the others are the ways a host (a
// caller's image server, or the provider's CDN) answers badly.
export const remoteAnswers = ["good", "redirect_to_bad_url", "garbage", "truncated_png", "lying_length", "trickle", "slow"] as const;
export type RemoteAnswer = (typeof remoteAnswers)[number];

export type RemoteImageHost = {
  url: string;
  // A source image URL answered the given way.
  sourceUrl(answer: RemoteAnswer): string;
  // How the provider's result images are answered, per provider task id (default: good, i.e.
  // relayed from the simulator). The simulator's SIM_PUBLIC_URL points here.
  answerResultsWith(choose: ResultChooser): void;
  hits(): Record<RemoteAnswer, number>;
  stop(): Promise<void>;
};

export type ResultChooser = (providerTaskId: string) => RemoteAnswer | Promise<RemoteAnswer>;

export type RemoteImageHostOptions = {
  sourceImage: Buffer;
  // Where `good` result images come from (the simulator's own /_sim/results).
  simulatorUrl: () => string;
  // `slow`: how long before a good answer; `trickle`: one byte per this many ms, for ever.
  slowMs?: number;
  trickleEveryMs?: number;
};

// The host behind both source image URLs and (through SIM_PUBLIC_URL) the provider's result URLs.
export const startRemoteImageHost = async (options: RemoteImageHostOptions): Promise<RemoteImageHost> => {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const hits = Object.fromEntries(remoteAnswers.map((a) => [a, 0])) as Record<RemoteAnswer, number>;
  let chooseResult: ResultChooser = () => "good";
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const answer = async (res: ServerResponse, how: RemoteAnswer, good: () => Promise<Buffer | undefined>) => {
    hits[how]++;
    const serveGood = async () => {
      const bytes = await good();
      return bytes ? send(res, bytes) : notFound(res);
    };
    switch (how) {
      case "redirect_to_bad_url":
        // Not a URL at all: a client that resolves the Location header must not fall over on it.
        res.writeHead(302, { location: "http://[::1" }).end();
        return;
      case "garbage":
        return send(res, Buffer.from("\x89PNG garbage, not an image at all ".repeat(40), "latin1"));
      case "truncated_png": {
        const bytes = await good();
        return bytes ? send(res, bytes.subarray(0, Math.floor(bytes.length / 2))) : notFound(res);
      }
      case "lying_length": {
        // Declares twice the bytes it sends, then closes the connection.
        const bytes = await good();
        if (!bytes) return notFound(res);
        res.writeHead(200, { "content-type": "image/png", "content-length": String(bytes.length * 2) });
        res.write(bytes, () => res.socket?.destroy());
        return;
      }
      case "trickle": {
        res.writeHead(200, { "content-type": "image/png", "content-length": String(10 * 1024 * 1024) });
        const drip = () => {
          if (res.destroyed || res.socket?.destroyed) return;
          res.write(Buffer.from([0x89]));
          later(options.trickleEveryMs ?? 500, drip);
        };
        drip();
        return;
      }
      case "slow":
        later(options.slowMs ?? 4_000, () => void serveGood().catch(() => res.destroy()));
        return;
      case "good":
        return serveGood();
    }
  };

  const relayResult = (path: string) => async (): Promise<Buffer | undefined> => {
    const response = await fetch(new URL(path, options.simulatorUrl()));
    if (!response.ok) return undefined;
    return Buffer.from(await response.arrayBuffer());
  };

  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    const source = /^\/source\/([a-z_]+)\/[^/]+\.png$/.exec(path);
    const result = /^\/_sim\/results\/([^/]+)\/\d+\.png$/.exec(path);
    const done = (promise: Promise<void>) => void promise.catch(() => res.destroy());
    if (source && (remoteAnswers as readonly string[]).includes(source[1]!)) {
      return done(answer(res, source[1] as RemoteAnswer, async () => options.sourceImage));
    }
    if (result) return done((async () => answer(res, await chooseResult(result[1]!), relayResult(path)))());
    notFound(res);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let counter = 0;
  return {
    url,
    sourceUrl: (how) => `${url}/source/${how}/${++counter}.png`,
    answerResultsWith: (choose) => {
      chooseResult = choose;
    },
    hits: () => ({ ...hits }),
    stop: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};

const send = (res: ServerResponse, body: Buffer) => {
  res.writeHead(200, { "content-type": "image/png", "content-length": String(body.length) }).end(body);
};

const notFound = (res: ServerResponse) => {
  res.writeHead(404, { "content-type": "text/plain" }).end("not found");
};
