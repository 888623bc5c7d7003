import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { makeImage } from "./images.ts";

// An image host whose answers are held until the test lets them go: a task whose source image is
// held stays `queued` (its download is in progress) for as long as the test needs.
export const startHeldImageHost = async () => {
  const png = await makeImage(600, 400);
  const held = new Map<string, ServerResponse[]>();
  const released = new Set<string>();
  const serve = (res: ServerResponse) => res.writeHead(200, { "content-type": "image/png", "content-length": png.length }).end(png);
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (released.has(path)) return serve(res);
    held.set(path, [...(held.get(path) ?? []), res]);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    release: (path: string) => {
      released.add(path);
      for (const res of held.get(path) ?? []) serve(res);
      held.delete(path);
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
