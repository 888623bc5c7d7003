// Preloaded into an API spawned by a test (node --import): its stdin is a pipe from the test
// process, which closes when that process dies however it dies, so the API never outlives it.
process.stdin.on("end", () => process.exit(1));
process.stdin.on("error", () => process.exit(1));
process.stdin.resume();
