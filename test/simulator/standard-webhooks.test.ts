import { describe, expect, it } from "vitest";
import { signStandardWebhook, standardWebhookHeaders } from "../../apps/simulator/standard-webhooks.sign.ts";

const vector = {
  secret: "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=",
  id: "9876543210",
  timestamp: 1781080794,
  body: '{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}',
  signature: "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=",
};

describe("Standard Webhooks signing", () => {
  it("when the KLING.md test vector is signed, then the documented signature comes out", () => {
    expect(signStandardWebhook(vector.secret, vector.id, vector.timestamp, vector.body)).toBe(vector.signature);
  });

  it("when headers are built, then they carry the id, the timestamp in seconds and the signature", () => {
    expect(standardWebhookHeaders(vector.secret, vector.id, vector.timestamp, vector.body)).toEqual({
      "webhook-id": vector.id,
      "webhook-timestamp": String(vector.timestamp),
      "webhook-signature": vector.signature,
    });
  });

  it("when one byte of the body changes, then the signature changes", () => {
    expect(signStandardWebhook(vector.secret, vector.id, vector.timestamp, `${vector.body} `)).not.toBe(vector.signature);
  });
});
