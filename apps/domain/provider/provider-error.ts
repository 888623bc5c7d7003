import type { ProviderErrorAction } from "./provider-error-codes.ts";

// A provider answer that was not a success, or a request whose outcome we could not learn.
export class ProviderError extends Error {
  // The provider surely made no task for this request: it answered with a refusal (its own error
  // code, or a 4xx of the route itself), or the request never left. A 5xx without a code may come
  // from a gateway in front of a provider that did create it, so it does not count.
  get definitelyNotCreated(): boolean {
    const { outcomeUnknown, notSent, code, httpStatus } = this.details;
    if (outcomeUnknown) return false;
    if (notSent) return true;
    return (code !== null && code !== undefined) || (httpStatus !== undefined && httpStatus < 500);
  }

  constructor(
    message: string,
    readonly details: {
      action: ProviderErrorAction;
      httpStatus?: number;
      code?: number | null;
      // True when the request may have reached the provider (timeout, dropped connection): a retry
      // must first ask whether the task already exists, so that it is not created and paid twice.
      outcomeUnknown?: boolean;
      // The connection was refused before any request went out (the route is down).
      notSent?: boolean;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = "ProviderError";
  }
}
