import { test as base, expect, Page } from '@playwright/test';
import * as path from 'node:path';

/** Where a server of the run keeps its data. */
export function dataDir(port: number): string {
  return path.join(process.env.E2E_DATA_DIR!, String(port));
}

/** A session's workspace on disk. */
export function workspace(port: number, project: string, session: string): string {
  return path.join(dataDir(port), 'workspaces', project, session);
}

/** Fails the test on any console error or uncaught page error. */
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: async ({ page }, use) => {
    const errors: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    page.on('pageerror', (err) => errors.push(String(err)));
    await use(errors);
    expect(errors, 'console errors').toEqual([]);
  },
});

/** Waits until the page is hydrated (interactive). */
export async function hydrated(page: Page) {
  await expect(page.locator('#app-state')).toHaveAttribute('data-hydrated', 'true');
}

export { expect };
