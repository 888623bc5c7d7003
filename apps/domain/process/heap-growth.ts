import v8 from "node:v8";

// V8 reads this flag at every full collection, so setting it once the process runs takes effect
// (batch-env.schema.ts says why the API sets it). 0: V8's own heap growing factor.
export const limitHeapGrowth = (percent: number) => {
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
};
