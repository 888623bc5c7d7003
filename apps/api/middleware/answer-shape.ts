// The two path families of the drop-in routes (KLING.md: Kling's own and CometAPI's). Everything
// under them, unknown paths and refusals made before any router ran included, answers in the
// provider's error shape; every other path answers RFC 9457 problem details.
export const dropinPrefixes = ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"] as const;

// Express matches mount paths case-insensitively and on the raw (still percent-encoded) path, so
// this does too: a path the drop-in router would serve is a drop-in path here.
const dropinPath = /^\/(?:kling\/)?v1\/images\/editing\/expand(?:\/|\?|$)/i;

export type AnswerShape = "provider" | "problem";

export const answerShapeOf = (originalUrl: string): AnswerShape => (dropinPath.test(originalUrl) ? "provider" : "problem");
