import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Resolver } from "../../apps/domain/http/address-check.ts";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { safeFetch, type SafeFetchOptions } from "../../apps/domain/http/safe-fetch.ts";
import { rejection, startHttpRemote, type Remote } from "./remote-servers.ts";

// The https path: the same guarded lookup, and a refused certificate or handshake is not retried.

let server: Server;
let port: number;
let plain: Remote;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "safe-fetch-tls-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=images.test", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")], { stdio: "ignore" });
    server = createServer({ key: readFileSync(path.join(dir, "key.pem")), cert: readFileSync(path.join(dir, "cert.pem")) }, (_req, res) =>
      res.writeHead(200).end("image"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  plain = await startHttpRemote({});
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await plain?.stop();
});

const toLoopback: Resolver = async () => [{ address: "127.0.0.1", family: 4 }];
const options = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({
  maxBytes: 1024,
  timeoutMs: 2_000,
  totalTimeoutMs: 5_000,
  allowedPrivateHosts: [],
  lookup: toLoopback,
  ...extra,
});

describe("safeFetch over https", () => {
  it("when an https name resolves to a private address, then it is refused before any handshake", async () => {
    const error = await rejection(safeFetch(`https://images.test:${port}/x.png`, options()));
    expect(error).toMatchObject({ kind: "blocked", retryable: false });
  });

  it("when the server's certificate is self-signed, then the fetch rejects as tls, not retryable", async () => {
    const allowedPrivateHosts = [parseAllowedPrivateHost(`images.test:${port}`)!];
    const error = await rejection(safeFetch(`https://images.test:${port}/x.png`, options({ allowedPrivateHosts })));
    expect(error).toMatchObject({ kind: "tls", retryable: false, publicReason: "the server's TLS certificate or handshake was refused" });
  });

  it("when an https URL points at a plain-HTTP server, then the handshake fails as tls, not retryable", async () => {
    const allowedPrivateHosts = [parseAllowedPrivateHost("images.test")!];
    const error = await rejection(safeFetch(`https://images.test:${plain.port}/x.png`, options({ allowedPrivateHosts })));
    expect(error).toMatchObject({ kind: "tls", retryable: false });
  });
});
