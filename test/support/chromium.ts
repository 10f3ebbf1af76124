/**
 * A real headless Chromium for the status page's tests: Debian's
 * /usr/bin/chromium, driven by playwright-core.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Where Chromium is missing: skips the suite with a warning that says what
 * goes untested (`untested`) if STRANGLER_SKIP_CHROMIUM=1, fails it with the
 * install command otherwise.
 */
export function requireChromium(suite: Mocha.Context, untested: string): void {
  if (existsSync(CHROMIUM)) return;
  if (process.env.STRANGLER_SKIP_CHROMIUM === '1') {
    console.warn(`    WARNING: ${CHROMIUM} is missing and STRANGLER_SKIP_CHROMIUM=1: ${untested} is not tested in a browser`);
    suite.skip();
  }
  throw new Error(`${CHROMIUM} is missing: install it with "bash scripts/install-system-deps.sh chromium" (or "sudo apt-get install -y chromium"), or set STRANGLER_SKIP_CHROMIUM=1 to skip this suite`);
}

/** Launches it headless. A fresh temporary profile per launch (playwright makes and removes it); nothing may reach other hosts. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Collects the page's uncaught errors and console errors (CSP violations among them), to be found empty. */
export function pageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  return problems;
}
