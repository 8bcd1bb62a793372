import { test, expect, hydrated, api, dropRefusals } from './fixtures';
import { PORT } from '../playwright.config';

test('projects: create with inline validation, search, delete with confirmation', async ({ page, consoleErrors }) => {
  const name = `e2e-${Math.random().toString(36).slice(2, 8)}`;
  await page.goto('/projects');
  await hydrated(page);

  // The rule is explained next to the field as it is typed, before any submit.
  const field = page.getByLabel('Name', { exact: true });
  await field.fill('Bad_Name');
  await expect(page.locator('.field-error')).toContainText('lowercase');
  await expect(field).toHaveAttribute('aria-invalid', 'true');
  await page.getByRole('button', { name: 'Create project' }).click();
  await expect(page).toHaveURL(/\/projects$/);

  await field.fill(name);
  await expect(page.locator('.field-error')).toHaveCount(0);
  await page.getByLabel('Display name').fill('E2E Team');
  await page.getByRole('button', { name: 'Create project' }).click();
  await expect(page).toHaveURL(new RegExp(`/projects/${name}$`));
  await expect(page.locator('h1')).toHaveText(name);

  // A second project with the same name is refused by the server, and the page says why.
  await page.goto('/projects');
  await hydrated(page);
  await field.fill(name);
  await page.getByRole('button', { name: 'Create project' }).click();
  await expect(page.locator('.banner[role=alert]')).toContainText('already exists');
  dropRefusals(consoleErrors, 409);

  // Search narrows the list.
  const search = page.getByLabel('Search projects');
  await search.fill(name);
  await expect(page.locator('tr[data-project]')).toHaveCount(1);
  await expect(page.locator(`tr[data-project="${name}"]`)).toContainText('E2E Team');
  await search.fill('no-such-project-anywhere');
  await expect(page.getByText('No project matches.')).toBeVisible();
  await search.fill(name);

  // Delete asks first; cancel keeps the project.
  const row = page.locator(`tr[data-project="${name}"]`);
  await row.getByRole('button', { name: 'Delete' }).click();
  await expect(row.getByRole('alertdialog')).toContainText(`Delete ${name} and its 0 sessions?`);
  await row.getByRole('button', { name: 'Cancel' }).click();
  await expect(row).toBeVisible();
  await row.getByRole('button', { name: 'Delete' }).click();
  await row.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(page.locator(`tr[data-project="${name}"]`)).toHaveCount(0);
  await expect(page.getByText('No project matches.')).toBeVisible();
  await expect(api(PORT, 'GET', `/api/projects/${name}`)).rejects.toThrow(/404/);
  expect(consoleErrors).toEqual([]);
});

test('settings: secrets are masked once saved, defaults are validated and kept', async ({ page, consoleErrors }) => {
  const project = `set-${Math.random().toString(36).slice(2, 8)}`;
  await api(PORT, 'POST', '/api/projects', { name: project });
  await page.goto(`/projects/${project}/settings`);
  await hydrated(page);

  const row = page.locator('.secret-row[data-key="GITHUB_TOKEN"]');
  await expect(row.locator('.masked')).toHaveText('not set');
  await row.locator('input').fill('ghp_supersecretvalue1234');
  await row.getByRole('button', { name: 'Save' }).click();
  await expect(row.locator('.masked')).not.toHaveText('not set');
  await expect(row.locator('input')).toHaveValue('');

  // After a reload the value is still there, masked: never shown again in plain text.
  await page.reload();
  await hydrated(page);
  const masked = await row.locator('.masked').textContent();
  expect(masked).not.toContain('supersecret');
  expect(masked).not.toBe('not set');
  expect(await page.content()).not.toContain('ghp_supersecretvalue1234');
  await row.getByRole('button', { name: 'Remove' }).click();
  await expect(row.locator('.masked')).toHaveText('not set');

  // Inactivity default: bad input explained in place, good input saved and shown again.
  const hours = page.getByLabel(/Stop sessions idle for/);
  await hours.fill('-1');
  await expect(page.locator('.field-error')).toContainText('number of hours');
  await hours.fill('2');
  await expect(page.locator('.field-error')).toHaveCount(0);
  await page.getByRole('button', { name: 'Save defaults' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Saved' })).toBeVisible();
  const settings = await api(PORT, 'GET', `/api/projects/${project}/settings`);
  expect(settings.inactivityTimeoutSeconds).toBe(7200);
  await page.reload();
  await hydrated(page);
  await expect(hours).toHaveValue('2');
  expect(consoleErrors).toEqual([]);
});
