import { networkInterfaces } from "node:os";
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { spawnApp, type Captured } from "./process-kit.ts";

// HOST: loopback unless told otherwise. Checked from this machine's own non-loopback address, which
// reaches a server bound to every interface but not one bound to 127.0.0.1.
const outsideAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

const reachable = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, host, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

describe.skipIf(!outsideAddress)("listen address", () => {
  const started: Captured[] = [];
  afterAll(async () => {
    for (const proc of started) proc.child.kill("SIGTERM");
    await Promise.all(started.map((p) => p.exited));
  });

  const startSimulator = async (env: Record<string, string>) => {
    const proc = spawnApp("apps/simulator/main.ts", { SIMULATOR_PORT: "0", LOG_FORMAT: "json", ...env });
    started.push(proc);
    const [, listen, port] = (await proc.waitFor(/"listen":"([^"]+):(\d+)"/, 60_000)) as unknown as [string, string, string];
    return { listen, port: Number(port) };
  };

  it("when HOST is unset, then the server listens on 127.0.0.1 only", async () => {
    const { listen, port } = await startSimulator({});
    expect(listen).toBe("127.0.0.1");
    expect(await reachable("127.0.0.1", port)).toBe(true);
    expect(await reachable(outsideAddress!, port)).toBe(false);
  });

  it("when HOST=0.0.0.0, then the server accepts connections on the machine's other addresses", async () => {
    const { listen, port } = await startSimulator({ HOST: "0.0.0.0" });
    expect(listen).toBe("0.0.0.0");
    expect(await reachable(outsideAddress!, port)).toBe(true);
  });
});
