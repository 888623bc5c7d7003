import { describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { storageConfigFrom } from "../../apps/domain/storage/storage-config.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";

const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
};

describe("storage configuration", () => {
  it("when nothing is set, then both apps store in the local directory", () => {
    expect(storageConfigFrom(parseApiConfig({}))).toEqual({ kind: "local", dir: "var/storage" });
    expect(storageConfigFrom(parseWorkerConfig({ STORAGE_DIR: "/data/x" }))).toEqual({ kind: "local", dir: "/data/x" });
  });

  it("when S3_BUCKET is set, then S3 is chosen with every S3 setting carried over", () => {
    const env = {
      S3_BUCKET: "kling-results",
      S3_ENDPOINT: "http://minio:9000",
      S3_REGION: "eu-west-1",
      S3_FORCE_PATH_STYLE: "true",
      S3_ACCESS_KEY_ID: "AKIA1",
      S3_SECRET_ACCESS_KEY: "secret1",
      S3_PREFIX: "prod/kling/",
      S3_TIMEOUT_MS: "5000",
    };
    const expected = {
      kind: "s3",
      bucket: "kling-results",
      endpoint: "http://minio:9000",
      region: "eu-west-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "AKIA1", secretAccessKey: "secret1" },
      prefix: "prod/kling/",
      timeoutMs: 5000,
    };
    expect(storageConfigFrom(parseApiConfig(env))).toEqual(expected);
    expect(storageConfigFrom(parseWorkerConfig(env))).toEqual(expected);
  });

  it("when no S3 credentials are given, then the SDK's default chain is left to find them", () => {
    expect(storageConfigFrom(parseWorkerConfig({ S3_BUCKET: "kling-results" }))).toMatchObject({ kind: "s3", credentials: undefined, region: "us-east-1", forcePathStyle: false, prefix: "" });
  });

  it("when STORAGE_BACKEND=local is set beside S3 variables, then the local directory wins", () => {
    expect(storageConfigFrom(parseWorkerConfig({ STORAGE_BACKEND: "local", S3_BUCKET: "kling-results" }))).toMatchObject({ kind: "local" });
  });

  it("when S3 is chosen without a bucket, or given half a key pair, then the boot stops naming the variable", () => {
    expect(problemsOf(() => parseApiConfig({ STORAGE_BACKEND: "s3" }))).toEqual(["S3_BUCKET: must be set when STORAGE_BACKEND=s3"]);
    expect(problemsOf(() => parseWorkerConfig({ STORAGE_BACKEND: "s3" }))).toEqual(["S3_BUCKET: must be set when STORAGE_BACKEND=s3"]);
    expect(problemsOf(() => parseWorkerConfig({ S3_BUCKET: "b-1", S3_ACCESS_KEY_ID: "AKIA1" }))).toEqual([
      "S3_SECRET_ACCESS_KEY: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together",
    ]);
  });

  it("when S3 variables are malformed, then each one is named", () => {
    const problems = problemsOf(() =>
      parseApiConfig({
        STORAGE_BACKEND: "gcs",
        S3_BUCKET: "Not_A_Bucket",
        S3_ENDPOINT: "ftp://minio",
        S3_FORCE_PATH_STYLE: "maybe",
        S3_PREFIX: "../escape/",
        S3_TIMEOUT_MS: "soon",
      }),
    );
    expect(problems.map((p) => p.split(":")[0]).sort()).toEqual(
      ["S3_BUCKET", "S3_ENDPOINT", "S3_FORCE_PATH_STYLE", "S3_PREFIX", "S3_TIMEOUT_MS", "STORAGE_BACKEND"].sort(),
    );
    expect(problemsOf(() => parseApiConfig({ S3_BUCKET: "b-1", S3_PREFIX: "no-trailing-slash" }))[0]).toMatch(/^S3_PREFIX: /);
  });
});
