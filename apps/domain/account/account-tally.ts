// What each account holds in this process right now (open live streams, running source downloads,
// body bytes in flight), for the per-account limits that keep one account from taking it all. An
// account is forgotten when its amount is back to zero, so the map holds only accounts holding
// something, however many accounts have come and gone.
export type AccountTally = {
  of(accountId: string): number;
  // The sum over all accounts.
  total(): number;
  add(accountId: string, amount?: number): void;
  remove(accountId: string, amount?: number): void;
};

export const createAccountTally = (): AccountTally => {
  const held = new Map<string, number>();
  let total = 0;
  const of = (accountId: string) => held.get(accountId) ?? 0;
  return {
    of,
    total: () => total,
    add(accountId, amount = 1) {
      held.set(accountId, of(accountId) + amount);
      total += amount;
    },
    remove(accountId, amount = 1) {
      const had = of(accountId);
      const left = had - amount;
      if (left > 0) held.set(accountId, left);
      else held.delete(accountId);
      total -= Math.min(had, amount);
    },
  };
};
