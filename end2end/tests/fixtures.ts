import { test as base, expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PORT } from '../playwright.config';

/** Where a server of the run keeps its data. */
export function dataDir(port: number): string {
  return path.join(process.env.E2E_DATA_DIR!, String(port));
}

/** A session's workspace on disk. */
export function workspace(port: number, project: string, session: string): string {
  return path.join(dataDir(port), 'workspaces', project, session);
}

/** The install secret of a server of the run (its owner's access key). */
export function installSecret(port: number, dir: string = dataDir(port)): string {
  return fs.readFileSync(path.join(dir, 'install-secret'), 'utf8').trim();
}

/** Signs the page's browser in to a server with its install secret (the login page's form). */
export async function signIn(page: Page, port: number, dir?: string) {
  const res = await page.request.post(`http://127.0.0.1:${port}/login`, {
    form: { key: installSecret(port, dir) },
    maxRedirects: 0,
  });
  expect(res.status(), 'signed in').toBe(303);
}

/**
 * Every page starts signed in to the main server of the run (tests of the login itself use a
 * fresh context); fails the test on any console error or uncaught page error.
 */
export const test = base.extend<{ consoleErrors: string[] }>({
  page: async ({ page }, use) => {
    await signIn(page, PORT);
    await use(page);
  },
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

/** A REST call to a server of the run; fails the test on an unexpected status. */
export async function api(
  port: number,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<any> {
  const headers: Record<string, string> = { authorization: `Bearer ${installSecret(port)}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** A fresh project with a unique name. */
export async function newProject(port: number, prefix: string): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await api(port, 'POST', '/api/projects', { name });
  return name;
}

/**
 * Starts a session through the REST API; returns its name. A batch session (it completes
 * once its agent has answered) unless the body says `stopOnRunFinished: false`.
 */
export async function newSession(port: number, project: string, body: Record<string, unknown>): Promise<string> {
  const created = await api(port, 'POST', `/api/projects/${project}/agentic-sessions`, { stopOnRunFinished: true, ...body });
  return created.name;
}

/** The `data-seq` of every transcript entry, in page order. */
export async function seqs(page: Page): Promise<number[]> {
  return page.locator('.transcript [data-seq]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));
}

/**
 * Removes the browser's own network line for refusals a test provoked on purpose (a server
 * function refusing answers with the REST status, e.g. 409, which Chromium logs); any other
 * console error still fails the test.
 */
export function dropRefusals(errors: string[], status: number) {
  const line = `Failed to load resource: the server responded with a status of ${status}`;
  const kept = errors.filter((e) => !e.startsWith(line));
  errors.splice(0, errors.length, ...kept);
}

/** git in `cwd`, as a test's own author. */
export const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', ['-c', 'user.name=e2e', '-c', 'user.email=e2e@example.com', ...args], { cwd, encoding: 'utf8' });

/** A bare repository `<dir>/acme/app.git` whose `main` has a README. */
export function bareRepo(dir: string): string {
  const bare = path.join(dir, 'acme', 'app.git');
  fs.mkdirSync(bare, { recursive: true });
  git(bare, 'init', '--bare', '--initial-branch=main');
  const work = path.join(dir, 'seed');
  fs.mkdirSync(work);
  git(work, 'init', '--initial-branch=main');
  fs.writeFileSync(path.join(work, 'README.md'), '# app\n');
  git(work, 'add', '.');
  git(work, 'commit', '-m', 'seed');
  git(work, 'push', bare, 'main');
  return bare;
}
