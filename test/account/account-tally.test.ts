import { describe, expect, it } from "vitest";
import { createAccountTally } from "../../apps/domain/account/account-tally.ts";

describe("account tally", () => {
  it("when accounts add and remove amounts, then each account's and the total follow, and an account back at zero holds nothing", () => {
    const tally = createAccountTally();
    tally.add("a");
    tally.add("a", 4);
    tally.add("b", 2);
    expect([tally.of("a"), tally.of("b"), tally.total()]).toEqual([5, 2, 7]);
    tally.remove("a", 5);
    expect([tally.of("a"), tally.total()]).toEqual([0, 2]);
    // Removing more than is held (a release after a reset) leaves zero, never a negative.
    tally.remove("b", 3);
    tally.remove("c");
    expect([tally.of("b"), tally.of("c"), tally.total()]).toEqual([0, 0, 0]);
    tally.add("b");
    expect([tally.of("b"), tally.total()]).toEqual([1, 1]);
  });
});
