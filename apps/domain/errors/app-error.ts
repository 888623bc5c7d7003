// One error type with a stable code; the HTTP status for each code lives in one table so the API's
// error handler, the workers and the process hooks all agree on what a failure means.
export const errorStatus = {
  validation_failed: 400,
  payload_too_large: 413,
  unauthenticated: 401,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  // Batches: an intake in a form we do not read; an Idempotency-Key reused with another body; a
  // batch that would take the account past its spend cap.
  unsupported_media_type: 415,
  unprocessable: 422,
  spend_cap_exceeded: 402,
  dependency_unavailable: 503,
  // A request body that arrived slower than the intake's minimum rate: its reservation was reclaimed.
  body_too_slow: 408,
  // Too much request body in flight at once (the API's intake budget): retry shortly.
  server_busy: 503,
  // One account holds too much of something counted per account (live streams): retry later.
  too_many_requests: 429,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof errorStatus;

export type FieldViolation = { field: string; message: string };

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly violations: FieldViolation[];

  constructor(code: ErrorCode, message: string, options: { violations?: FieldViolation[]; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.violations = options.violations ?? [];
  }

  get httpStatus(): number {
    return errorStatus[this.code];
  }
}

export const validationError = (violations: FieldViolation[]): AppError =>
  new AppError(
    "validation_failed",
    violations.map((v) => `${v.field}: ${v.message}`).join("; "),
    { violations },
  );
