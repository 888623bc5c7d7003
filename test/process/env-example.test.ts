import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { localUrlFor } from "../../apps/domain/process/listen-url.ts";
import { stackPrivateHosts } from "../../apps/local-stack/local-routes.ts";
import { parseStackConfig } from "../../apps/local-stack/stack.config.ts";

// .env.example is what a newcomer reads to learn what `npm start` allows: its words must match
// what the stack actually hands its children.
const line = async (name: string) => {
  const text = await readFile(new URL("../../.env.example", import.meta.url), "utf8");
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${name}=`));
  if (at < 0) throw new Error(`.env.example has no ${name} line`);
  // With its continuation lines (indented comments right below it).
  const rest = lines.slice(at + 1);
  const continued = rest.slice(0, Math.max(0, rest.findIndex((l) => !/^\s+#/.test(l))));
  return [lines[at]!, ...continued].join("\n");
};

const allowedBy = (env: Record<string, string>) => {
  const config = parseStackConfig(env);
  return stackPrivateHosts(config, localUrlFor(config.HOST, config.SIMULATOR_PORT));
};

describe(".env.example", () => {
  it("when it says what npm start adds to ALLOWED_PRIVATE_HOSTS, then that is exactly what npm start allows (the simulator's port, not loopback)", async () => {
    const text = await line("ALLOWED_PRIVATE_HOSTS");
    expect(allowedBy({})).toBe("127.0.0.1:3100");
    expect(allowedBy({ LOCAL_ROUTES: "2" })).toBe("127.0.0.1:3100,127.0.0.1:3101");
    expect(allowedBy({ ALLOWED_PRIVATE_HOSTS: "images.lan" })).toBe("images.lan,127.0.0.1:3100");
    expect(text).toContain(`npm start adds only ${allowedBy({})}`);
    expect(text).toContain(`${allowedBy({ LOCAL_ROUTES: "2" })} with LOCAL_ROUTES=2`);
    expect(text).not.toMatch(/adds 127\.0\.0\.1,localhost/);
  });

  it("when it lists the operator's tokens and the shared-prefix switch, then each is there with its default", async () => {
    expect(await line("METRICS_TOKEN")).toMatch(/^METRICS_TOKEN= +# .*Bearer/);
    expect(await line("QUEUE_PREFIX_SHARED")).toMatch(/^QUEUE_PREFIX_SHARED=false +# /);
  });
});
