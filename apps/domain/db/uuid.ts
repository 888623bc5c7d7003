import { z } from "zod";

// Built once: zod builds (and JIT-compiles) a schema on construction, and `z.uuid()` made per call
// cost ~5% of a status read's CPU (BENCH_API_CPU_PROFILE).
const uuidSchema = z.uuid();

// Ids in paths are checked before they reach a uuid column (Postgres would refuse the cast: a 500).
export const isUuid = (value: string): boolean => uuidSchema.safeParse(value).success;
