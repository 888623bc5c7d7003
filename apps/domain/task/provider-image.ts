import { z } from "zod";
import type { Task } from "../db/database.ts";
import type { ObjectStorage } from "../storage/local-storage.ts";

// How the image we checked reaches the provider (docs/intake.md). Never the caller's URL: the
// provider would download it again and might get other bytes, or none (a URL only we can reach).
//   base64: inline in the create body; needs nothing from the provider's network.
//   link:   a signed, expiring link to our stored copy on PUBLIC_BASE_URL, which the provider must
//           be able to reach; a small create body.
//   auto:   inline while the encoded image fits the provider's 10 MB, the link above it.
export const providerImageDeliveryEnv = {
  PROVIDER_IMAGE_DELIVERY: z.enum(["auto", "base64", "link"]).default("auto"),
};
export type ProviderImageDelivery = z.output<typeof providerImageDeliveryEnv.PROVIDER_IMAGE_DELIVERY>;

// KLING.md: "at most 10 MB" for `image`; in auto mode it is read as the length of what we send.
export const PROVIDER_INLINE_IMAGE_MAX_CHARS = 10 * 1024 * 1024;

export type ProviderImageDeps = {
  storage: ObjectStorage;
  imageDelivery: ProviderImageDelivery;
  // A signed link to the task's stored source, on PUBLIC_BASE_URL.
  sourceLinkFor: (taskId: string) => string;
};

// The `image` of the provider's create body, or undefined when the task has no image to send.
export const providerImageOf = async (deps: ProviderImageDeps, task: Pick<Task, "id" | "imageUrl" | "sourceKey">): Promise<string | undefined> => {
  // A URL task checked before its bytes were kept (an older version): only its URL exists.
  if (!task.sourceKey) return task.imageUrl ?? undefined;
  if (deps.imageDelivery === "link") return deps.sourceLinkFor(task.id);
  const bytes = await deps.storage.read(task.sourceKey);
  if (!bytes) return undefined;
  // Base64 is 4 characters for every 3 bytes; checked before encoding, to encode nothing in vain.
  const encodedChars = Math.ceil(bytes.length / 3) * 4;
  if (deps.imageDelivery === "auto" && encodedChars > PROVIDER_INLINE_IMAGE_MAX_CHARS) return deps.sourceLinkFor(task.id);
  return bytes.toString("base64");
};
