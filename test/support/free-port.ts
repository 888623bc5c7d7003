import { createServer } from "node:net";
import type { AddressInfo } from "node:net";

// A loopback port nothing listens on right now, for a server that must keep its port across a
// restart (a private Redis, an API whose callback URLs the provider already holds).
// FREE_PORT_RANGE=<first>-<last>: only ports in that range (a shared machine where each person
// keeps to a range of their own), tried from a random start; otherwise any port the system gives.
const range = /^(\d+)-(\d+)$/.exec(process.env.FREE_PORT_RANGE ?? "");
const listenable = (port: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });

export const freePort = async (): Promise<number> => {
  if (!range) return listenable(0);
  const [first, last] = [Number(range[1]), Number(range[2])];
  const size = last - first + 1;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    try {
      return await listenable(first + ((start + i) % size));
    } catch {
      // taken: the next one
    }
  }
  throw new Error(`FREE_PORT_RANGE ${first}-${last}: no free port`);
};
