import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import { contentTypeOfKey, type ObjectStorage } from "./local-storage.ts";
import { assertStorageKey } from "./storage-key.ts";

export type S3StorageOptions = {
  bucket: string;
  // A key prefix inside the bucket (e.g. `kling/`), so one bucket can serve several installations.
  prefix: string;
  region: string;
  endpoint?: string | undefined;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  timeoutMs: number;
};

// Only a missing object is "not there"; a missing bucket (also a 404) is a broken configuration and
// must fail loudly, not look like an image that was never stored.
const isMissing = (error: unknown) => error instanceof S3ServiceException && error.name === "NoSuchKey";

// Any S3-compatible store (AWS S3, MinIO, Ceph, R2, ...). Without credentials the SDK's default chain
// applies (env, profile, instance role).
export const createS3Storage = (options: S3StorageOptions): ObjectStorage & { close: () => void } => {
  const client = new S3Client({
    region: options.region,
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle,
    credentials: options.credentials,
    maxAttempts: 3,
    requestHandler: { connectionTimeout: options.timeoutMs, requestTimeout: options.timeoutMs },
    // The SDK's default CRC32 checksums (since early 2025) are refused or ignored by several
    // S3-compatible servers; the archive step verifies every image's sha256 itself.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const objectKey = (key: string) => {
    assertStorageKey(key);
    return `${options.prefix}${key}`;
  };
  const get = async (key: string) => {
    try {
      return await client.send(new GetObjectCommand({ Bucket: options.bucket, Key: objectKey(key) }));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  };
  return {
    // A PUT replaces the object whole: readers see the old bytes or the new ones, never a mix.
    put: async (key, bytes) => {
      await client.send(
        new PutObjectCommand({ Bucket: options.bucket, Key: objectKey(key), Body: bytes, ContentType: contentTypeOfKey(key) }),
      );
    },
    open: async (key) => {
      const object = await get(key);
      if (!object?.Body) return undefined;
      if (object.ContentLength !== undefined) return { stream: object.Body as Readable, size: object.ContentLength };
      // A server that sends no length (chunked): the image is read whole so the answer can say it.
      const bytes = Buffer.from(await object.Body.transformToByteArray());
      return { stream: Readable.from([bytes]), size: bytes.length };
    },
    read: async (key) => {
      const object = await get(key);
      if (!object?.Body) return undefined;
      return Buffer.from(await object.Body.transformToByteArray());
    },
    // S3 answers a delete of a missing key with success, as the local store does.
    remove: async (key) => {
      await client.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: objectKey(key) }));
    },
    close: () => client.destroy(),
  };
};
