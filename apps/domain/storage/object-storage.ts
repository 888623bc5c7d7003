import { createLocalStorage, type ObjectStorage } from "./local-storage.ts";
import type { StorageConfig } from "./storage-config.ts";

export type StorageHandle = ObjectStorage & { describe: string; close: () => void };

// The one place that picks the store; the API and the worker both start from here. The AWS SDK is
// loaded only when S3 is configured (it costs ~0.2 s of start-up and warns about Node versions).
export const createObjectStorage = async (config: StorageConfig): Promise<StorageHandle> => {
  if (config.kind === "local") {
    return { ...createLocalStorage(config.dir), describe: `local directory ${config.dir}`, close: () => undefined };
  }
  const { createS3Storage } = await import("./s3-storage.ts");
  const where = `${config.endpoint ?? "AWS S3"} bucket ${config.bucket}${config.prefix ? ` prefix ${config.prefix}` : ""}`;
  return { ...createS3Storage(config), describe: `S3 ${where}` };
};
