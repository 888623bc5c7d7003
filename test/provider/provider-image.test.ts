import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalStorage, type ObjectStorage } from "../../apps/domain/storage/local-storage.ts";
import { PROVIDER_INLINE_IMAGE_MAX_CHARS, providerImageOf, type ProviderImageDelivery } from "../../apps/domain/task/provider-image.ts";

// Which form of our stored copy the provider's create body carries (PROVIDER_IMAGE_DELIVERY).
let dir: string;
let storage: ObjectStorage;
const small = Buffer.from("small image bytes");
// One byte over what encodes within the provider's 10 MB.
const large = Buffer.alloc((PROVIDER_INLINE_IMAGE_MAX_CHARS / 4) * 3 + 1, 7);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "provider-image-"));
  storage = createLocalStorage(dir);
  await storage.put("sources/small.png", small);
  await storage.put("sources/large.png", large);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const imageFor = (imageDelivery: ProviderImageDelivery, sourceKey: string | null, imageUrl: string | null = "https://example.com/a.png") =>
  providerImageOf({ storage, imageDelivery, sourceLinkFor: (id) => `https://api.example/files/tasks/${id}/source?signed` }, { id: "t1", imageUrl, sourceKey });

describe("the image the provider is given", () => {
  it("when auto and the encoded copy fits 10 MB, then it is the stored bytes inline", async () => {
    expect(await imageFor("auto", "sources/small.png")).toBe(small.toString("base64"));
  });
  it("when auto and the encoded copy would exceed 10 MB, then it is the signed link", async () => {
    expect(await imageFor("auto", "sources/large.png")).toBe("https://api.example/files/tasks/t1/source?signed");
  });
  it("when link, then it is the signed link to our copy, never the caller's URL", async () => {
    expect(await imageFor("link", "sources/small.png")).toBe("https://api.example/files/tasks/t1/source?signed");
  });
  it("when base64, then it is inline whatever its size", async () => {
    expect((await imageFor("base64", "sources/large.png"))?.length).toBeGreaterThan(PROVIDER_INLINE_IMAGE_MAX_CHARS);
  });
  it("when the stored copy is missing, then there is nothing to send", async () => {
    expect(await imageFor("auto", "sources/gone.png")).toBeUndefined();
  });
});
