// A URL as we show it back (task views, delivery logs, logs): its credentials hidden. A callback_url
// may carry them (https://user:pass@host/..., ?token=...), and whoever reads a task view or a log
// line is not necessarily whoever may call that endpoint.
const REDACTED = "redacted";

// Query parameter names that usually carry a credential: matched anywhere in the name, so
// access_token, api_key, X-Amz-Signature and client_secret are all caught. Hiding a harmless value
// by mistake costs nothing; showing a secret costs a lot.
const secretName = /token|secret|key|sig|passw|pwd|pass\b|auth|credential|session|jwt|bearer|cookie|otp/i;

export const redactUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // Not a URL (it was refused at intake anyway): nothing of it is shown.
    return `[${REDACTED} malformed URL]`;
  }
  // Any user info counts: a bare https://TOKEN@host/ is as secret as user:pass@.
  if (url.username) url.username = REDACTED;
  if (url.password) url.password = REDACTED;
  const names = [...new Set([...url.searchParams.keys()])].filter((name) => secretName.test(name));
  for (const name of names) url.searchParams.set(name, REDACTED);
  // A fragment never reaches the server, but may hold an access token all the same (OAuth's implicit flow).
  if (/token|secret|key|sig|auth/i.test(url.hash)) url.hash = REDACTED;
  return url.toString();
};

export const redactNullableUrl = (raw: string | null): string | null => (raw === null ? null : redactUrl(raw));
