// Keys are built by us (task ids and indexes), but both stores refuse anything that could name
// something outside their root or mean different objects on different backends: one rule, so a key
// that works locally works on S3 and the other way round.
export const storageKeyProblem = (key: string): string | undefined => {
  if (key.length === 0) return "is empty";
  if (Buffer.byteLength(key) > 1024) return "is longer than 1024 bytes";
  if (/[\u0000-\u001f\u007f\\]/.test(key)) return "contains a control character or a backslash";
  if (key.startsWith("/") || key.endsWith("/")) return "starts or ends with a slash";
  if (key.split("/").some((segment) => segment === "" || segment === "." || segment === "..")) return "has an empty, `.` or `..` segment";
  return undefined;
};

export const assertStorageKey = (key: string) => {
  const problem = storageKeyProblem(key);
  if (problem) throw new Error(`storage key ${JSON.stringify(key.slice(0, 80))} ${problem}`);
};
