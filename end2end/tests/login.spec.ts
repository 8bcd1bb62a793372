import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { test, expect, hydrated, installSecret } from './fixtures';
import { PORT } from '../playwright.config';
import { dataDir } from './fixtures';

const root = path.resolve(__dirname, '../..');
const base = `http://127.0.0.1:${PORT}`;

/** A new login link from the server binary, as `server --login-url` prints it. */
function loginLink(): string {
  return execFileSync(`${root}/target/release/server`, ['--login-url'], {
    cwd: root,
    env: { ...process.env, AMBIENT_DATA_DIR: dataDir(PORT), AMBIENT_ADDR: `127.0.0.1:${PORT}` },
    encoding: 'utf8',
  }).trim();
}

test('a browser without a session gets the login page; the API answers 401', async ({ browser }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(`${base}/projects`);
  expect(res?.status()).toBe(401);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.locator('#key')).toBeFocused();
  const api = await context.request.get(`${base}/api/projects`);
  expect(api.status()).toBe(401);
  expect((await api.json()).error).toBe('unauthorized');
  // A wrong key is refused on the page, with a reason.
  await page.locator('#key').fill('ak_not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('.problem')).toContainText('not a valid access key');
  // The right one signs in.
  await page.locator('#key').fill(installSecret(PORT));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/projects$/);
  await hydrated(page);
  await context.close();
});

test('the printed login link signs a browser in, once', async ({ browser }) => {
  const link = loginLink();
  expect(link).toMatch(new RegExp(`^${base}/login\\?token=lt_[0-9a-f]{64}$`));
  const first = await browser.newContext();
  const page = await first.newPage();
  await page.goto(link);
  await expect(page).toHaveURL(/\/projects$/);
  await hydrated(page);
  await expect(page.getByRole('heading', { name: 'Projects' })).toBeVisible();
  // Signed out, the page is the login page again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await first.close();

  const second = await browser.newContext();
  const again = await second.newPage();
  const res = await again.goto(link);
  expect(res?.status()).toBe(401);
  await expect(again.locator('.problem')).toContainText('used already or has expired');
  await second.close();
});

test('access keys: made with a name, shown once, listed with their use, revoked at once', async ({ page, consoleErrors }) => {
  await page.goto('/keys');
  await hydrated(page);
  await page.getByPlaceholder('What is it for? (e.g. ci)').fill('e2e script');
  await page.getByRole('button', { name: 'Make a key' }).click();
  const value = (await page.locator('.new-key .key-value').textContent())!.trim();
  expect(value).toMatch(/^ak_[0-9a-f]{64}$/);
  const row = page.locator('tr', { hasText: 'e2e script' });
  await expect(row).toContainText('never');
  // The key works, and its use shows.
  const ok = await fetch(`${base}/api/projects`, { headers: { authorization: `Bearer ${value}` } });
  expect(ok.status).toBe(200);
  await page.reload();
  await hydrated(page);
  await expect(page.locator('tr', { hasText: 'e2e script' })).not.toContainText('never');
  await expect(page.locator('.new-key')).toHaveCount(0); // never shown again
  // Revoked, it is refused at once.
  await page.locator('tr', { hasText: 'e2e script' }).getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('button', { name: 'Yes, revoke' }).click();
  await expect(page.locator('tr', { hasText: 'e2e script' })).toHaveCount(0);
  const refused = await fetch(`${base}/api/projects`, { headers: { authorization: `Bearer ${value}` } });
  expect(refused.status).toBe(401);
  expect(consoleErrors).toEqual([]);
});
