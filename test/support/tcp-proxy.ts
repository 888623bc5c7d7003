import { once } from "node:events";
import net from "node:net";
import type { AddressInfo } from "node:net";

// pass: bytes flow both ways. refuse: the port refuses new connections (nothing listens) and every
// open one is reset, as when a server or its host goes down. hang: connections are accepted but
// nothing is forwarded either way, open connections included, as when a server is frozen or a
// network path silently drops packets; going back to pass delivers what was held, in order.
export type ProxyMode = "pass" | "refuse" | "hang";

export type TcpProxy = {
  port: number;
  host: string;
  mode(): ProxyMode;
  setMode(mode: ProxyMode): Promise<void>;
  // The same URL with its host and port replaced by the proxy's (postgresql://..., redis://...).
  via(url: string): string;
  stats(): { accepted: number; reset: number; open: number };
  stop(): Promise<void>;
};

type Link = {
  client: net.Socket;
  upstream?: net.Socket;
  // Bytes not yet forwarded while the proxy hangs, per direction.
  toUpstream: Buffer[];
  toClient: Buffer[];
};

// A TCP proxy on a loopback port between our processes and a shared server (Postgres), so a test
// can make that server unreachable or silent for our processes alone: the shared server itself must
// never be stopped or frozen, other people use it.
export const startTcpProxy = async (target: { host: string; port: number }): Promise<TcpProxy> => {
  let mode: ProxyMode = "pass";
  const links = new Set<Link>();
  const counts = { accepted: 0, reset: 0 };

  const flush = (link: Link) => {
    if (mode !== "pass" || !link.upstream || link.upstream.connecting) return;
    for (const chunk of link.toUpstream.splice(0)) link.upstream.write(chunk);
    for (const chunk of link.toClient.splice(0)) link.client.write(chunk);
  };

  const drop = (link: Link) => {
    links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  };

  const connectUpstream = (link: Link) => {
    const upstream = net.connect(target.port, target.host);
    link.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on("connect", () => flush(link));
    upstream.on("data", (chunk: Buffer) => {
      if (mode === "pass" && link.toClient.length === 0) link.client.write(chunk);
      else link.toClient.push(chunk);
    });
    upstream.on("error", () => drop(link));
    upstream.on("close", () => {
      // Deliver what the server said before it closed, unless we are holding it back.
      if (mode === "pass") link.client.end();
      else if (links.has(link)) link.client.destroy();
      links.delete(link);
    });
  };

  const onConnection = (client: net.Socket) => {
    counts.accepted++;
    const link: Link = { client, toUpstream: [], toClient: [] };
    links.add(link);
    client.setNoDelay(true);
    client.on("data", (chunk: Buffer) => {
      if (mode === "pass" && link.upstream && !link.upstream.connecting && link.toUpstream.length === 0) link.upstream.write(chunk);
      else link.toUpstream.push(chunk);
    });
    client.on("error", () => drop(link));
    client.on("close", () => drop(link));
    // While hanging, a new connection is accepted but not even connected onwards.
    if (mode === "pass") connectUpstream(link);
  };

  let server: net.Server | undefined;
  let port = 0;
  const listen = async () => {
    const next = net.createServer(onConnection);
    next.listen(port, "127.0.0.1");
    await Promise.race([once(next, "listening"), once(next, "error").then(([error]) => Promise.reject(error as Error))]);
    port = (next.address() as AddressInfo).port;
    server = next;
  };
  const unlisten = () => {
    // close() stops accepting at once; its callback would wait for open connections, so not awaited.
    server?.close();
    server = undefined;
  };

  await listen();
  return {
    port,
    host: "127.0.0.1",
    mode: () => mode,
    setMode: async (next) => {
      if (next === mode) return;
      const previous = mode;
      mode = next;
      if (next === "refuse") {
        unlisten();
        for (const link of [...links]) {
          counts.reset++;
          links.delete(link);
          link.client.resetAndDestroy();
          link.upstream?.resetAndDestroy();
        }
        return;
      }
      if (previous === "refuse") await listen();
      if (next === "pass") {
        for (const link of links) {
          if (!link.upstream) connectUpstream(link);
          else flush(link);
        }
      }
    },
    via: (url) => {
      const parsed = new URL(url);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    stats: () => ({ ...counts, open: links.size }),
    stop: async () => {
      unlisten();
      for (const link of [...links]) drop(link);
    },
  };
};
