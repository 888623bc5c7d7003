import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

// Debian's Chromium (apt-get install chromium; .ci/run installs it when missing) driven by
// Playwright's core library, with the flags that work on these machines (shared/STACK.md).
export const chromiumPath = "/usr/bin/chromium";
export const hasChromium = () => existsSync(chromiumPath);

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
