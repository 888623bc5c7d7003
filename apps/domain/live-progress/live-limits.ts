import { createAccountTally } from "../account/account-tally.ts";
import { AppError } from "../errors/app-error.ts";

export type LiveLimits = {
  // Takes one of the account's places or throws a 429; the returned release is idempotent.
  enter(accountId: string): () => void;
  inUse(accountId?: string): number;
};

// Open streams and long-polls each hold a connection, a listener and periodic reads; one account
// must not take them all. Counted per API process (a client's connections land on one process
// behind a sticky balancer, or spread over several, each of which enforces its own share).
export const createLiveLimits = (maxPerAccount: number): LiveLimits => {
  const open = createAccountTally();
  return {
    enter(accountId) {
      const used = open.of(accountId);
      if (used >= maxPerAccount) {
        throw new AppError(
          "too_many_requests",
          `this account already has ${used} live streams or long-polls open on this server (the limit is ${maxPerAccount}); close one or retry later`,
        );
      }
      open.add(accountId);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        open.remove(accountId);
      };
    },
    inUse: (accountId) => (accountId === undefined ? open.total() : open.of(accountId)),
  };
};
