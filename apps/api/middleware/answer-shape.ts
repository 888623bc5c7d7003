// The two path families of the drop-in routes (KLING.md: Kling's own and CometAPI's). Everything
// under them, unknown paths and refusals made before any router ran included, answers in the
// provider's error shape; every other path answers RFC 9457 problem details.
export const dropinPrefixes = ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"] as const;

// Express matches mount paths case-insensitively and on the raw (still percent-encoded) path, so
// this does too. The whole families answer in the provider's shape: a client of CometAPI
// (/kling/v1/...) or Kling (/v1/images/...) that calls a route we do not serve gets the provider's
// 404/1202, not our problem details.
const dropinPath = /^\/(?:kling\/v1|v1\/images)(?:\/|\?|$)/i;

export type AnswerShape = "provider" | "problem";

export const answerShapeOf = (originalUrl: string): AnswerShape => (dropinPath.test(originalUrl) ? "provider" : "problem");
