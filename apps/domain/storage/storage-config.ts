import { z } from "zod";
import { envBoolean, envPositiveMs } from "../config/parse-env.ts";
import type { S3StorageOptions } from "./s3-storage.ts";

// Where images live: a local directory (default; shared by the API and workers on one machine) or
// any S3-compatible object store. Setting S3_BUCKET is enough to choose S3.
export const storageEnv = {
  STORAGE_BACKEND: z.enum(["local", "s3"], { error: "must be local or s3" }).optional(),
  STORAGE_DIR: z.string().default("var/storage"),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: "must be a bucket name (3-63 characters: a-z, 0-9, `.` and `-`)" })
    .optional(),
  // Unset for AWS itself; e.g. http://127.0.0.1:9000 for MinIO.
  S3_ENDPOINT: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  S3_REGION: z.string().min(1).default("us-east-1"),
  // Neither set: the AWS SDK's default credential chain (env, profile, instance role).
  S3_ACCESS_KEY_ID: z.string().optional(),
  S3_SECRET_ACCESS_KEY: z.string().optional(),
  // Most self-hosted stores (MinIO, Ceph) want path-style URLs: http://host/bucket/key.
  S3_FORCE_PATH_STYLE: envBoolean.default(false),
  S3_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, { error: "must be path segments each ending in `/` (e.g. kling/), no `..`" })
    .refine((v) => !v.split("/").some((s) => s === "." || s === ".."), { error: "must not contain `.` or `..` segments" })
    .default(""),
  S3_TIMEOUT_MS: envPositiveMs.default(30_000),
};

type StorageEnv = z.output<z.ZodObject<typeof storageEnv>>;

export type StorageConfig = { kind: "local"; dir: string } | ({ kind: "s3" } & S3StorageOptions);

const storageKind = (env: Pick<StorageEnv, "STORAGE_BACKEND" | "S3_BUCKET">) => env.STORAGE_BACKEND ?? (env.S3_BUCKET ? "s3" : "local");

// Cross-field rules, added with superRefine to each app's env schema, so a bad combination stops the
// boot with the variable's name like any other bad variable.
export const checkStorageEnv = (env: StorageEnv, ctx: z.RefinementCtx) => {
  if (storageKind(env) === "s3" && !env.S3_BUCKET) {
    ctx.addIssue({ code: "custom", path: ["S3_BUCKET"], message: "must be set when STORAGE_BACKEND=s3" });
  }
  if ((env.S3_ACCESS_KEY_ID === undefined) !== (env.S3_SECRET_ACCESS_KEY === undefined)) {
    ctx.addIssue({ code: "custom", path: ["S3_SECRET_ACCESS_KEY"], message: "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together" });
  }
};

export const storageConfigFrom = (env: StorageEnv): StorageConfig => {
  if (storageKind(env) === "local") return { kind: "local", dir: env.STORAGE_DIR };
  if (!env.S3_BUCKET) throw new Error("S3_BUCKET: must be set when STORAGE_BACKEND=s3");
  return {
    kind: "s3",
    bucket: env.S3_BUCKET,
    prefix: env.S3_PREFIX,
    region: env.S3_REGION,
    endpoint: env.S3_ENDPOINT,
    forcePathStyle: env.S3_FORCE_PATH_STYLE,
    credentials:
      env.S3_ACCESS_KEY_ID && env.S3_SECRET_ACCESS_KEY
        ? { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY }
        : undefined,
    timeoutMs: env.S3_TIMEOUT_MS,
  };
};
