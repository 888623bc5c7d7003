import v8 from "node:v8";
import vm from "node:vm";

// V8 reads this flag at every full collection, so setting it once the process runs takes effect
// (batch-env.schema.ts says why the API sets it). 0: V8's own heap growing factor.
export const limitHeapGrowth = (percent: number) => {
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
};

// The old generation's garbage, bounded where one request makes much of it (a JSON batch: every
// item parsed and validated, 10,000 of them). V8 promotes part of each item's garbage (strings held
// by objects it already put in the old generation) and starts a full collection only near its own
// limit, which at this heap size is over 100 MB whatever --heap-growing-percent says: a 28 MB
// batch took the old generation from 55 to 131 MB before V8 collected (docs/benchmarks.md). So the
// intake collects itself once the old generation has grown by `allowedBytes` since the last
// collection: a pause of ~20-100 ms per collection, paid only by large batches.
type Collect = (options?: { type: "major" | "minor" }) => void;
let collect: Collect | undefined;
const collector = (): Collect => {
  if (!collect) {
    v8.setFlagsFromString("--expose-gc");
    collect = vm.runInNewContext("gc") as Collect;
  }
  return collect;
};
// No argument: a full collection ({ type: "major" } did a young one on Node 20's V8).
const fullCollection = () => collector()();

// A body arriving fast leaves its socket chunks behind as dead Buffers whose memory is outside the
// heap: with little else allocated, no young collection comes to free them, and a 28 MB upload held
// 10-20 MB of them at once. A young collection (a few ms) every few MB received frees them.
export const collectYoung = () => collector()({ type: "minor" });

const oldGenerationUsed = () => {
  let used = 0;
  for (const space of v8.getHeapSpaceStatistics()) if (space.space_name === "old_space" || space.space_name === "large_object_space") used += space.space_used_size;
  return used;
};

export const OLD_GENERATION_GROWTH_BYTES = 16 * 1024 * 1024;
let floor: number | undefined;

// Cheap enough to call every few hundred KB of work (a few microseconds); shared by every request
// of the process, so concurrent batches collect once between them, not once each.
export const boundOldGenerationGrowth = (allowedBytes = OLD_GENERATION_GROWTH_BYTES) => {
  const used = oldGenerationUsed();
  if (floor === undefined || used < floor) floor = used;
  if (used - floor <= allowedBytes) return false;
  fullCollection();
  floor = oldGenerationUsed();
  return true;
};
