import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, expect, hydrated, newProject, git, bareRepo } from './fixtures';
import { PORT } from '../playwright.config';

const remoteBranches = (bare: string) =>
  git(bare, 'for-each-ref', '--format=%(refname:short)', 'refs/heads').split('\n').filter((b) => b);

// Run 3 from the new-session form, compare them side by side, keep the second: only its
// work reaches the remote.
test('run 3 and keep one: only the kept attempt is pushed', async ({ page, consoleErrors }) => {
  const dir = fs.mkdtempSync(path.join(process.env.E2E_DATA_DIR!, 'attempts-'));
  const bare = bareRepo(dir);
  const project = await newProject(PORT, 'attempts');
  await page.goto(`/projects/${project}/new`);
  await hydrated(page);
  await page.getByLabel('What should the agent do?').fill('create notes.md');
  await page.getByRole('button', { name: 'Add repository' }).click();
  const row = page.locator('.repo-row');
  await row.getByLabel('URL').fill(`file://${bare}`);
  await row.getByLabel('push').check();
  await page.getByLabel('Attempts').selectOption('3');
  await page.getByRole('button', { name: 'Start attempts' }).click();
  await expect(page).toHaveURL(new RegExp(`/projects/${project}/attempts/attempts-[0-9a-f]{8}$`), { timeout: 15_000 });
  const group = page.url().split('/').pop()!;
  await hydrated(page);

  // Three columns, each finished with its own diff of notes.md; nothing pushed yet.
  const cards = page.locator('.attempt');
  await expect(cards).toHaveCount(3);
  for (let i = 0; i < 3; i++) {
    const card = cards.nth(i);
    await expect(card.locator('[data-phase]')).toHaveAttribute('data-phase', 'Completed', { timeout: 90_000 });
    await expect(card.locator('.attempt-repo[data-repo="app"] .changes-figures')).toContainText('1 file changed', { timeout: 15_000 });
    await card.locator('.attempt-repo summary').click();
    await expect(card.locator('.diff')).toContainText('notes.md');
  }
  expect(remoteBranches(bare)).toEqual(['main']);

  // Keep the second.
  await cards.nth(1).getByRole('button', { name: 'Keep this one' }).click();
  await expect(cards.nth(1)).toHaveAttribute('data-kept', 'true');
  await expect(cards.nth(1).locator('.badge.kept')).toHaveText('Kept');
  await expect(page.getByRole('button', { name: 'Keep this one' })).toHaveCount(0);
  const branch = `ambient/${group}-2`;
  await expect.poll(() => remoteBranches(bare), { timeout: 60_000 }).toEqual([branch, 'main']);
  expect(git(bare, 'ls-tree', '--name-only', branch)).toContain('notes.md');
  // Its page says it was delivered.
  await cards.nth(1).getByRole('link', { name: 'Attempt 2' }).click();
  await expect(page).toHaveURL(new RegExp(`/sessions/${group}-2$`));
  await hydrated(page);
  await expect(page.locator('.entry.git').first()).toContainText(`Pushed app to branch ${branch}`, { timeout: 30_000 });
  expect(consoleErrors).toEqual([]);
});
