import { randomBytes, randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import {
  signStandardWebhook,
  standardWebhookHeaders,
  standardWebhookSecretListSchema,
  verifyStandardWebhook,
} from "../../apps/domain/webhooks/standard-webhooks.ts";
import { encryptSecret, generateServerKeyMaterial, serverKeyFrom } from "../../apps/domain/crypto/server-key.ts";
import { openSigningSecrets } from "../../apps/domain/webhooks/signing-secret.store.ts";

// KLING.md "Callbacks".
const vector = {
  secret: "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=",
  id: "9876543210",
  timestamp: 1781080794,
  body: '{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}',
  signature: "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=",
};
const otherSecret = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0";
const headers = (signature = vector.signature, timestamp = vector.timestamp) => ({
  "webhook-id": vector.id,
  "webhook-timestamp": String(timestamp),
  "webhook-signature": signature,
});
const verify = (overrides: Partial<Parameters<typeof verifyStandardWebhook>[0]> = {}) =>
  verifyStandardWebhook({ secrets: [vector.secret], headers: headers(), rawBody: vector.body, nowSeconds: vector.timestamp, ...overrides });

describe("Standard Webhooks signing", () => {
  it("when the KLING.md test vector is signed, then the documented signature comes out", () => {
    expect(signStandardWebhook(vector.secret, vector.id, vector.timestamp, vector.body)).toBe(vector.signature);
    expect(signStandardWebhook(vector.secret, vector.id, vector.timestamp, Buffer.from(vector.body))).toBe(vector.signature);
  });

  it("when the secret is given without its whsec_ prefix, then the signature is the same", () => {
    expect(signStandardWebhook(vector.secret.slice(6), vector.id, vector.timestamp, vector.body)).toBe(vector.signature);
  });

  it("when the secret is not base64, then signing refuses", () => {
    expect(() => signStandardWebhook("whsec_not base64!", vector.id, vector.timestamp, vector.body)).toThrow(/Base64/);
  });

  it("when headers are built, then they carry the id, the timestamp in seconds and the signature", () => {
    expect(standardWebhookHeaders(vector.secret, vector.id, vector.timestamp, vector.body)).toEqual(headers());
  });
});

describe("Standard Webhooks verification", () => {
  it("when the KLING.md test vector is verified, then it passes", () => {
    expect(verify()).toEqual({ ok: true });
    expect(verify({ rawBody: Buffer.from(vector.body) })).toEqual({ ok: true });
  });

  it("when the configured secret has no whsec_ prefix, then it verifies just the same", () => {
    expect(verify({ secrets: [vector.secret.slice(6)] })).toEqual({ ok: true });
  });

  it("when the header lists several signatures during the sender's rotation, then the matching one is found", () => {
    const rotating = `v1,${Buffer.alloc(32, 7).toString("base64")} ${vector.signature} v1,bm90LWl0`;
    expect(verify({ headers: headers(rotating) })).toEqual({ ok: true });
  });

  it("when a repeated header reaches us joined with a comma, then each signature is still read", () => {
    const joined = `v1,${Buffer.alloc(32, 7).toString("base64")}, ${vector.signature}`;
    expect(verify({ headers: headers(joined) })).toEqual({ ok: true });
  });

  it("when only other versions carry the right bytes, then they are ignored", () => {
    const v2 = vector.signature.replace(/^v1,/, "v2,");
    expect(verify({ headers: headers(v2) })).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("when several secrets are configured and only the second matches, then it passes", () => {
    expect(verify({ secrets: [otherSecret, vector.secret] })).toEqual({ ok: true });
  });

  it("when one byte of the body changes, then it fails with no matching signature", () => {
    expect(verify({ rawBody: vector.body.replace("succeeded", "succeedex") })).toEqual({ ok: false, reason: "no_matching_signature" });
    expect(verify({ rawBody: `${vector.body} ` })).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("when the secret is wrong, then it fails with no matching signature", () => {
    expect(verify({ secrets: [otherSecret] })).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("when the id or the timestamp is not the one signed, then it fails", () => {
    expect(verify({ headers: { ...headers(), "webhook-id": "9876543211" } })).toEqual({ ok: false, reason: "no_matching_signature" });
    expect(verify({ headers: headers(vector.signature, vector.timestamp + 1) })).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("when the timestamp is 301 s old or 301 s ahead, then it fails with its reason; 299 s either way passes", () => {
    expect(verify({ nowSeconds: vector.timestamp + 301 })).toEqual({ ok: false, reason: "timestamp_too_old" });
    expect(verify({ nowSeconds: vector.timestamp - 301 })).toEqual({ ok: false, reason: "timestamp_too_new" });
    expect(verify({ nowSeconds: vector.timestamp + 299 })).toEqual({ ok: true });
    expect(verify({ nowSeconds: vector.timestamp - 299 })).toEqual({ ok: true });
  });

  it("when the timestamp is not a whole number of seconds, then it fails as invalid", () => {
    expect(verify({ headers: { ...headers(), "webhook-timestamp": "1781080794.5" } })).toEqual({ ok: false, reason: "invalid_timestamp" });
    expect(verify({ headers: { ...headers(), "webhook-timestamp": "1781080794000" } })).toEqual({ ok: false, reason: "timestamp_too_new" });
  });

  it("when a header is missing or empty, then it fails with missing headers", () => {
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"] as const) {
      const { [name]: _dropped, ...rest } = headers();
      expect(verify({ headers: rest })).toEqual({ ok: false, reason: "missing_headers" });
      expect(verify({ headers: { ...headers(), [name]: "" } })).toEqual({ ok: false, reason: "missing_headers" });
    }
    expect(verify({ headers: {} })).toEqual({ ok: false, reason: "missing_headers" });
  });

  it("when the header has no v1 signature at all, then it fails with no matching signature", () => {
    expect(verify({ headers: headers("garbage") })).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("when the headers come as a fetch Headers object, then they are read case-insensitively", () => {
    const fetchHeaders = new Headers({ "Webhook-Id": vector.id, "Webhook-Timestamp": String(vector.timestamp), "Webhook-Signature": vector.signature });
    expect(verify({ headers: fetchHeaders })).toEqual({ ok: true });
  });

  it("when a configured secret is malformed or none is configured, then it fails and says so", () => {
    expect(verify({ secrets: ["whsec_not base64!"] })).toEqual({ ok: false, reason: "malformed_secret" });
    expect(verify({ secrets: [vector.secret, "whsec_"] })).toEqual({ ok: false, reason: "malformed_secret" });
    expect(verify({ secrets: [] })).toEqual({ ok: false, reason: "no_secrets" });
  });
});

// We sign and verify with node:crypto (standard-webhooks.ts says why); consumers verify with the
// public library and the simulator signs with it, so the two must agree both ways.
describe("Standard Webhooks interop with the standardwebhooks package", () => {
  const secrets = [vector.secret, otherSecret, `whsec_${randomBytes(24).toString("base64")}`, `whsec_${randomBytes(32).toString("base64")}`];
  const bodies = [vector.body, JSON.stringify({ type: "task.succeeded", data: { prompt: "café ☕ 日本 \u2028", n: 2 } }), ""];

  it("when we sign, then the package verifies it, with or without the whsec_ prefix on its side", () => {
    const now = Math.floor(Date.now() / 1000);
    for (const secret of secrets) {
      for (const body of bodies) {
        const signed = standardWebhookHeaders(secret, "msg_1", now, body);
        expect(() => new Webhook(secret).verify(body, signed), `${secret} ${body}`).not.toThrow();
        expect(() => new Webhook(secret.slice(6)).verify(Buffer.from(body), signed)).not.toThrow();
        expect(() => new Webhook(otherSecret === secret ? vector.secret : otherSecret).verify(body, signed)).toThrow(/No matching signature/);
      }
    }
  });

  it("when we sign with two live secrets during a rotation, then the package verifies with either", () => {
    const now = Math.floor(Date.now() / 1000);
    const signature = [vector.secret, otherSecret].map((secret) => signStandardWebhook(secret, "msg_2", now, vector.body)).join(" ");
    const headers = { "webhook-id": "msg_2", "webhook-timestamp": String(now), "webhook-signature": signature };
    expect(new Webhook(vector.secret).verify(vector.body, headers)).toEqual(JSON.parse(vector.body));
    expect(new Webhook(otherSecret).verify(vector.body, headers)).toEqual(JSON.parse(vector.body));
  });

  it("when the package signs, then we verify it, over the bytes as received", () => {
    const now = Math.floor(Date.now() / 1000);
    for (const secret of secrets) {
      for (const body of bodies) {
        const headers = { "webhook-id": "msg_3", "webhook-timestamp": String(now), "webhook-signature": new Webhook(secret).sign("msg_3", new Date(now * 1000), body) };
        expect(verifyStandardWebhook({ secrets: [secret], headers, rawBody: Buffer.from(body) }), `${secret} ${body}`).toEqual({ ok: true });
        expect(verifyStandardWebhook({ secrets: [otherSecret === secret ? vector.secret : otherSecret], headers, rawBody: body })).toEqual({ ok: false, reason: "no_matching_signature" });
      }
    }
  });

  it("when the KLING.md test vector is signed by the package, then it gives the documented signature", () => {
    expect(new Webhook(vector.secret).sign(vector.id, new Date(vector.timestamp * 1000), vector.body)).toBe(vector.signature);
  });
});

describe("webhook secret list schema", () => {
  it("when secrets are comma-separated, then each is kept, trimmed", () => {
    expect(standardWebhookSecretListSchema.parse(` ${vector.secret} ,${otherSecret},`)).toEqual([vector.secret, otherSecret]);
  });

  it("when an entry lacks the prefix or is not base64, then it is refused", () => {
    for (const bad of [vector.secret.slice(6), "whsec_", "whsec_abc*", "whsec_a", ","]) {
      expect(standardWebhookSecretListSchema.safeParse(bad).success, bad).toBe(false);
    }
  });
});

// Each sealed signing secret is opened once and kept (signing-secret.store.ts): the kept one must
// never stand in for a check the opening makes.
describe("opening an account's sealed signing secret", () => {
  const serverKey = serverKeyFrom(generateServerKeyMaterial());
  const key = serverKey.derive("outbound-webhooks");
  const seal = (accountId: string, secret: string) => encryptSecret(key, secret, `webhook-secret:${accountId}`);
  const row = (currentSealed: string) => ({ currentSealed, previousSealed: null, previousUntil: null, rotatedAt: new Date() });

  it("when a sealed value opened for its account is copied onto another account's row, then it does not open there", () => {
    const [owner, other] = [randomUUID(), randomUUID()];
    const sealed = seal(owner, "whsec_b3duZXI=");
    expect(openSigningSecrets(serverKey, owner, row(sealed)).current).toBe("whsec_b3duZXI=");
    expect(() => openSigningSecrets(serverKey, other, row(sealed))).toThrow();
    expect(openSigningSecrets(serverKey, owner, row(sealed)).current).toBe("whsec_b3duZXI=");
  });

  it("when the same sealed value comes under another server key, then it does not open", () => {
    const owner = randomUUID();
    const sealed = seal(owner, "whsec_a2V5");
    expect(openSigningSecrets(serverKey, owner, row(sealed)).current).toBe("whsec_a2V5");
    expect(() => openSigningSecrets(serverKeyFrom(generateServerKeyMaterial()), owner, row(sealed))).toThrow();
  });

  it("when the previous secret's grace period has ended, then only the current one signs, though the previous was opened before", () => {
    const owner = randomUUID();
    const rotated = { currentSealed: seal(owner, "whsec_bmV3"), previousSealed: seal(owner, "whsec_b2xk"), rotatedAt: new Date() };
    const now = new Date();
    expect(openSigningSecrets(serverKey, owner, { ...rotated, previousUntil: new Date(now.getTime() + 60_000) }, now).previous).toBe("whsec_b2xk");
    expect(openSigningSecrets(serverKey, owner, { ...rotated, previousUntil: new Date(now.getTime() - 1) }, now).previous).toBeNull();
  });
});
