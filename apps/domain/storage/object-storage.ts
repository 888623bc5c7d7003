import { AppError } from "../errors/app-error.ts";
import { createLocalStorage, type ObjectStorage } from "./local-storage.ts";
import type { StorageConfig } from "./storage-config.ts";
import { assertStorageKey } from "./storage-key.ts";

export type StorageHandle = ObjectStorage & {
  describe: string;
  close: () => void;
  // Writes (and replaces) one small object: /readyz asks whether the store takes writes now.
  probe: () => Promise<void>;
};

// A store that refuses a write or a read (a read-only or full disk, a directory gone, S3 down or
// denying) is a dependency outage, not a bug: a 503 with Retry-After that says so, like Postgres
// and Redis. A key we built wrong stays a bug (assertStorageKey throws before the store is asked).
export const storageUnavailable = (operation: "write" | "read", cause: unknown) => {
  // A file system error names the call and its code only (its message carries our paths); a store's
  // answer (S3's "InvalidAccessKeyId: ...") is kept whole, as the operator needs it.
  const e = (cause ?? {}) as { code?: unknown; syscall?: unknown; name?: unknown; message?: unknown };
  const reason =
    typeof e.syscall === "string" ? `${String(e.code)} on ${e.syscall}` : [e.name, e.message].filter((v) => typeof v === "string" && v !== "").join(": ") || "error";
  const outcome = operation === "write" ? "nothing was stored, retry later" : "retry later";
  return new AppError("dependency_unavailable", `image storage cannot be ${operation === "write" ? "written" : "read"} right now (${reason}); ${outcome}`, { cause });
};

const guarded = (store: ObjectStorage): ObjectStorage => {
  const guard =
    <A extends unknown[], R>(operation: "write" | "read", call: (key: string, ...rest: A) => Promise<R>) =>
    async (key: string, ...rest: A): Promise<R> => {
      assertStorageKey(key);
      try {
        return await call(key, ...rest);
      } catch (error) {
        throw storageUnavailable(operation, error);
      }
    };
  return {
    put: guard("write", store.put),
    open: guard("read", store.open),
    read: guard("read", store.read),
    remove: guard("write", store.remove),
  };
};

const probeKey = "health/readyz-probe";

// The one place that picks the store; the API and the worker both start from here. The AWS SDK is
// loaded only when S3 is configured (it costs ~0.2 s of start-up and warns about Node versions).
export const createObjectStorage = async (config: StorageConfig): Promise<StorageHandle> => {
  const handle = (store: ObjectStorage, describe: string, close: () => void): StorageHandle => {
    const safe = guarded(store);
    return { ...safe, describe, close, probe: () => safe.put(probeKey, Buffer.from(new Date().toISOString())) };
  };
  if (config.kind === "local") return handle(createLocalStorage(config.dir), `local directory ${config.dir}`, () => undefined);
  const { createS3Storage } = await import("./s3-storage.ts");
  const where = `${config.endpoint ?? "AWS S3"} bucket ${config.bucket}${config.prefix ? ` prefix ${config.prefix}` : ""}`;
  const s3 = createS3Storage(config);
  return handle(s3, `S3 ${where}`, s3.close);
};
