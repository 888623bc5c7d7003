import { request as httpRequest } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { generate } from "selfsigned";

// A deployment's TLS terminator in front of the API: HTTPS on loopback with a certificate made at
// test time (selfsigned: pure JavaScript, so no openssl binary is needed on the machine), every
// request forwarded as plain HTTP to the target with the usual X-Forwarded-* headers.
export const startTlsProxy = async () => {
  const pems = await generate([{ name: "commonName", value: "localhost" }], {
    keyType: "ec",
    algorithm: "sha256",
    notAfterDate: new Date(Date.now() + 24 * 3_600_000),
    extensions: [
      // Its own trust anchor: clients are given this certificate as their CA.
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", digitalSignature: true, keyCertSign: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] },
    ],
  });
  let target: URL | undefined;
  // What went through, so a test can tell a download used the proxy and not the API directly.
  const forwarded: string[] = [];

  const server = createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
    if (!target) {
      res.writeHead(502).end("no upstream");
      return;
    }
    forwarded.push(`${req.method} ${req.url}`);
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: {
          ...req.headers,
          "x-forwarded-proto": "https",
          "x-forwarded-host": req.headers.host ?? "",
          "x-forwarded-for": req.socket.remoteAddress ?? "",
        },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `https://127.0.0.1:${port}`,
    // The certificate to trust (PEM): the proxy's own, self-signed.
    ca: pems.cert,
    forwarded,
    forwardTo: (url: string) => {
      target = new URL(url);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
};
