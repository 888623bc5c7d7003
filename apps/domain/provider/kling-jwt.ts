import { createHmac } from "node:crypto";

const base64url = (input: Buffer | string) => Buffer.from(input).toString("base64url");

// Kling's official API accepts a short-lived HS256 JWT: iss = access key, exp = now+1800 s,
// nbf = now-5 s (clock skew), signed with the secret key.
export const signKlingJwt = (accessKey: string, secretKey: string, nowSeconds = Math.floor(Date.now() / 1000)) => {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify({ iss: accessKey, exp: nowSeconds + 1800, nbf: nowSeconds - 5 }));
  const signature = createHmac("sha256", secretKey).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
};
