// Defaults that serve a local run; every app's env schema and the Prisma CLI share them.
export const defaultDatabaseUrl = "postgresql://postgres@127.0.0.1:5432/kling_orchestrator";
export const defaultRedisUrl = "redis://127.0.0.1:6379";
export const defaultApiPort = 3000;
export const defaultSimulatorPort = 3100;
