import { createServer } from "node:net";
import type { AddressInfo } from "node:net";

// A loopback port nothing listens on right now, for a server that must keep its port across a
// restart (a private Redis, an API whose callback URLs the provider already holds).
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
