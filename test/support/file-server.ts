import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

// Serves test images over real HTTP, as a caller's image host would.
export const startFileServer = async (files: Record<string, { body: Buffer | string; contentType?: string }>) => {
  const server = createServer((req, res) => {
    const file = files[req.url ?? ""];
    if (!file) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": file.contentType ?? "image/png", "content-length": Buffer.byteLength(file.body) });
    res.end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    host: "127.0.0.1",
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};
