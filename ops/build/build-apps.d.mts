// Types of build-apps.mjs for the TypeScript that imports it (the stack's supervisor, the tests).
export declare const buildDir: string;
export declare const entryPoints: string[];
export declare const builtEntry: (entry: string) => string;
export declare const build: (fingerprint?: string) => Promise<void>;
export declare const ensureBuilt: () => Promise<boolean>;
