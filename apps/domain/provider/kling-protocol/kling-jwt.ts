import { signHs256Jwt } from "../../crypto/hs256-jwt.ts";

// Kling's official API accepts a short-lived HS256 JWT: iss = access key, exp = now+1800 s,
// nbf = now-5 s (clock skew), signed with the secret key.
export const signKlingJwt = (accessKey: string, secretKey: string, nowSeconds = Math.floor(Date.now() / 1000)) =>
  signHs256Jwt({ iss: accessKey, exp: nowSeconds + 1800, nbf: nowSeconds - 5 }, secretKey);
