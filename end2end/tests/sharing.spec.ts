import { test, expect, hydrated, newProject, newSession } from './fixtures';
import { PORT } from '../playwright.config';

const base = `http://127.0.0.1:${PORT}`;

test('sharing: an admin makes a view key; a browser signed in with it is offered nothing it may not do', async ({ page, browser, consoleErrors }) => {
  const project = await newProject(PORT, 'shared');
  const session = await newSession(PORT, project, { initialPrompt: 'slow 4', displayName: 'watched one' });

  // The owner is offered the owner's keys and new projects.
  await page.goto('/projects');
  await hydrated(page);
  await expect(page.getByRole('link', { name: 'Access keys' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'New project' })).toBeVisible();

  // The owner shares the project from its Sharing page: a view key, expiring in 30 days.
  await page.goto(`/projects/${project}`);
  await hydrated(page);
  await page.getByRole('link', { name: 'Sharing' }).click();
  await expect(page).toHaveURL(`${base}/projects/${project}/sharing`);
  await hydrated(page);
  await page.getByPlaceholder('What is it for? (e.g. ci)').fill('carol');
  await page.locator('#key-role').selectOption('view');
  await page.locator('#key-lifetime').selectOption({ label: '30 days' });
  await page.getByRole('button', { name: 'Make a key' }).click();
  const key = (await page.locator('.new-key .key-value').textContent())!.trim();
  expect(key).toMatch(/^ak_[0-9a-f]{64}$/);
  const row = page.locator('tr', { hasText: 'carol' });
  await expect(row).toHaveAttribute('data-role', 'view');
  await expect(row).not.toContainText('never expires');

  // Carol signs in with it, in her own browser.
  const carol = await browser.newContext({ baseURL: base });
  const signedIn = await carol.request.post(`${base}/login`, { form: { key }, maxRedirects: 0 });
  expect(signedIn.status()).toBe(303);
  const view = await carol.newPage();
  const errors: string[] = [];
  view.on('pageerror', (e) => errors.push(String(e)));

  // Her project list is this project only; the owner's keys are not offered.
  await view.goto('/projects');
  await hydrated(view);
  await expect(view.locator('main')).toContainText(project);
  await expect(view.getByRole('link', { name: 'Access keys' })).toHaveCount(0);
  await expect(view.getByRole('heading', { name: 'New project' })).toHaveCount(0);

  // The project page: no way to start, steer, stop or delete, and the reason why.
  await view.goto(`/projects/${project}`);
  await hydrated(view);
  const start = view.getByRole('button', { name: 'New session' });
  await expect(start).toBeDisabled();
  await expect(start).toHaveAttribute('title', /you need edit on project .* \(you have view\)/);
  await expect(view.locator('.role-note')).toContainText('View only');
  await expect(view.getByRole('link', { name: 'Sharing' })).toHaveCount(0);
  await expect(view.getByRole('link', { name: 'Settings' })).toHaveCount(0);
  const sessionRow = view.locator(`tr[data-session="${session}"]`);
  await expect(sessionRow).toContainText('watched one');
  await expect(sessionRow.getByRole('button')).toHaveCount(0);

  // The session page: the transcript and its export, no composer, no actions.
  await view.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(view);
  await expect(view.locator('.role-note')).toContainText('you need edit');
  await expect(view.getByRole('link', { name: 'Export' })).toBeVisible();
  await expect(view.locator('#composer')).toHaveCount(0);
  for (const name of ['Stop', 'Continue', 'Clone', 'Delete', 'Rename session']) {
    await expect(view.getByRole('button', { name })).toHaveCount(0);
  }
  await expect(view.locator('[data-phase]').first()).toHaveAttribute('data-phase', 'Completed', { timeout: 30_000 });

  // The new-session form, reached by its address, says why it cannot start anything.
  await view.goto(`/projects/${project}/new`);
  await hydrated(view);
  await expect(view.locator('.role-note')).toContainText('you need edit on project');
  await expect(view.getByRole('button', { name: 'Start session' })).toBeDisabled();

  // Revoked on the Sharing page: her browser is signed out at once.
  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('button', { name: 'Yes, revoke' }).click();
  await expect(page.locator('tr', { hasText: 'carol' })).toHaveCount(0);
  const after = await view.goto(`/projects/${project}`);
  expect(after?.status()).toBe(401);
  await expect(view.locator('#login')).toBeVisible();
  expect(errors).toEqual([]);
  await carol.close();
  expect(consoleErrors).toEqual([]);
});
