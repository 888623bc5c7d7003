import type { ProviderErrorAction } from "./provider-error-codes.ts";

// A provider answer that was not a success, or a request whose outcome we could not learn.
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly details: {
      action: ProviderErrorAction;
      httpStatus?: number;
      code?: number | null;
      // True when the request may have reached the provider (timeout, dropped connection): a retry
      // must first ask whether the task already exists, so that it is not created and paid twice.
      outcomeUnknown?: boolean;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = "ProviderError";
  }
}
