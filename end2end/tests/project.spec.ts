import { test, expect, hydrated, api, newProject, newSession, signIn } from './fixtures';
import { NO_CREDENTIALS_PORT, PORT } from '../playwright.config';

test('project page: phases update live; stop, continue, clone and delete from the table', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'live');
  const quick = await newSession(PORT, project, { initialPrompt: 'slow 8', displayName: 'quick one' });
  const long = await newSession(PORT, project, { initialPrompt: 'run: echo started; sleep 600', displayName: 'long one' });
  await page.goto(`/projects/${project}`);
  await hydrated(page);

  const quickRow = page.locator(`tr[data-session="${quick}"]`);
  const longRow = page.locator(`tr[data-session="${long}"]`);
  await expect(quickRow).toContainText('quick one');
  await expect(quickRow.locator('[data-phase]')).toHaveAttribute('data-phase', /Pending|Creating|Running/);
  // No reload: the table follows the sessions by itself.
  await expect(quickRow.locator('[data-phase]')).toHaveAttribute('data-phase', 'Completed', { timeout: 30_000 });
  await expect(longRow.locator('[data-phase]')).toHaveAttribute('data-phase', 'Running', { timeout: 30_000 });

  await longRow.getByRole('button', { name: 'Stop' }).click();
  await expect(longRow.locator('[data-phase]')).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await longRow.getByRole('button', { name: 'Continue' }).click();
  await expect(longRow.locator('[data-phase]')).not.toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await expect(longRow.locator('[data-phase]')).toHaveAttribute('data-phase', /Completed|Running/, { timeout: 60_000 });

  // Delete asks first, then the row goes.
  await quickRow.getByRole('button', { name: 'Delete' }).click();
  await quickRow.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(page.locator(`tr[data-session="${quick}"]`)).toHaveCount(0);
  await expect(api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${quick}`)).rejects.toThrow(/404/);

  // Clone opens the copy.
  await longRow.getByRole('button', { name: 'Clone' }).click();
  await expect(page).toHaveURL(new RegExp(`/projects/${project}/sessions/session-`));
  expect(page.url()).not.toContain(long);
  await hydrated(page);
  await expect(page.locator('.session-header h1')).toContainText('long one');
  await api(PORT, 'POST', `/api/projects/${project}/agentic-sessions/${long}/stop`).catch(() => {});
  expect(consoleErrors).toEqual([]);
});

test('project page: search and paging', async ({ page, consoleErrors }) => {
  // The server without credentials: every session fails at once, without a model.
  const base = `http://127.0.0.1:${NO_CREDENTIALS_PORT}`;
  const project = await newProject(NO_CREDENTIALS_PORT, 'paging');
  for (let i = 1; i <= 22; i++) {
    const word = i === 7 ? 'zebra' : 'task';
    await newSession(NO_CREDENTIALS_PORT, project, { initialPrompt: `${word} number ${i}`, displayName: `item ${i}` });
  }
  await signIn(page, NO_CREDENTIALS_PORT);
  await page.goto(`${base}/projects/${project}`);
  await hydrated(page);

  const rows = page.locator('tr[data-session]');
  await expect(rows).toHaveCount(20);
  await expect(page.locator('.pager')).toContainText('1–20 of 22');
  await expect(rows.first()).toContainText('item 22'); // newest first
  await expect(page.getByRole('button', { name: 'Previous' })).toBeDisabled();
  await page.getByRole('button', { name: 'Next' }).click();
  await expect(page.locator('.pager')).toContainText('21–22 of 22');
  await expect(rows).toHaveCount(2);
  await expect(page.getByRole('button', { name: 'Next' })).toBeDisabled();
  await page.getByRole('button', { name: 'Previous' }).click();
  await expect(rows).toHaveCount(20);

  await page.getByLabel('Search sessions').fill('zebra');
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText('item 7');
  await expect(page.locator('.pager')).toContainText('1–1 of 1');
  await page.getByLabel('Search sessions').fill('nothing-matches-this');
  await expect(page.getByText('No sessions yet')).toBeVisible();
  expect(consoleErrors).toEqual([]);
});
