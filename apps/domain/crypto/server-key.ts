import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

// One secret per installation, from which every other key is derived (HKDF, one purpose each): the
// image-link signatures and the encryption of stored access-key secrets. It never has a well-known
// default: production must set SERVER_KEY; a local run generates one on first start and keeps it
// in a file readable only by its owner, shared by the local processes.
export type ServerKey = { derive(purpose: KeyPurpose): Buffer };
export type KeyPurpose = "image-links" | "access-key-secrets" | "outbound-webhooks";

export const serverKeyFrom = (material: string): ServerKey => {
  const ikm = Buffer.from(material, "utf8");
  const cache = new Map<KeyPurpose, Buffer>();
  return {
    derive: (purpose) => {
      let key = cache.get(purpose);
      if (!key) {
        key = Buffer.from(hkdfSync("sha256", ikm, Buffer.alloc(0), `kling-orchestrator/${purpose}`, 32));
        cache.set(purpose, key);
      }
      return key;
    },
  };
};

export const generateServerKeyMaterial = () => randomBytes(32).toString("base64url");

// The key file of a local installation: created once (exclusively, so processes starting together
// agree on one), then read by every process.
export const loadOrCreateLocalServerKey = async (file: string): Promise<string> => {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(path.dirname(file), { recursive: true });
  try {
    await writeFile(file, `${generateServerKeyMaterial()}\n`, { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  return (await readFile(file, "utf8")).trim();
};

// AES-256-GCM: "v1.<iv>.<tag>.<ciphertext>", all base64url. The access key is bound as associated
// data, so a ciphertext copied onto another key's row does not decrypt.
export const encryptSecret = (key: Buffer, plaintext: string, boundTo: string): string => {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(boundTo, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return ["v1", iv, cipher.getAuthTag(), ciphertext].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
};

export const decryptSecret = (key: Buffer, sealed: string, boundTo: string): string => {
  const [version, iv, tag, ciphertext] = sealed.split(".");
  if (version !== "v1" || !iv || !tag || ciphertext === undefined) throw new Error("not a sealed secret");
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"));
  decipher.setAAD(Buffer.from(boundTo, "utf8"));
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
};
