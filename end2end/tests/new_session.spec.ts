import { test, expect, hydrated, dropRefusals } from './fixtures';

test('new session: invalid input is explained next to its field, before submit', async ({ page, consoleErrors }) => {
  await page.goto('/projects/default/new');
  await hydrated(page);
  const start = page.getByRole('button', { name: 'Start session' });

  // Nothing typed: the prompt says it is needed, and nothing is created.
  await start.click();
  await expect(page.locator('.field:has(#prompt) .field-error')).toContainText('must not be empty');
  await expect(page).toHaveURL(/\/new$/);
  await page.getByLabel('What should the agent do?').fill('first line\nsecond line');
  await expect(page.locator('.field:has(#prompt) .field-error')).toHaveCount(0);

  // Repositories: rows are added and removed; each field is checked as typed.
  await page.getByRole('button', { name: 'Add repository' }).click();
  await page.getByRole('button', { name: 'Add repository' }).click();
  await expect(page.locator('.repo-row')).toHaveCount(2);
  const first = page.locator('.repo-row').first();
  await first.getByLabel('URL').fill('not a url');
  await expect(first.locator('.field-error')).toBeVisible();
  await expect(first.getByLabel('URL')).toHaveAttribute('aria-invalid', 'true');
  await first.getByLabel('Branch').fill('bad..branch');
  await expect(first.locator('.field-error')).toHaveCount(2);
  await page.locator('.repo-row').nth(1).getByRole('button', { name: 'Remove repository' }).click();
  await expect(page.locator('.repo-row')).toHaveCount(1);

  // Advanced options.
  await page.getByText('Advanced options').click();
  await page.getByLabel('Timeout (seconds, empty for none)').fill('-5');
  await expect(page.locator('.field:has(#timeout) .field-error')).toContainText('whole number of seconds');
  await page.getByLabel(/Inactivity timeout/).fill('ten');
  await expect(page.locator('.field:has(#inactivity) .field-error')).toContainText('whole number of seconds');
  await page.getByRole('button', { name: 'Add variable' }).click();
  await page.locator('.env-row').getByLabel('Name').fill('1BAD');
  await expect(page.locator('.env-row .field-error')).toBeVisible();

  await start.click();
  await expect(page).toHaveURL(/\/new$/);

  // Fixed, the form goes through with every option.
  await first.getByLabel('URL').fill('https://github.com/example/repo.git');
  await first.getByLabel('Branch').fill('main');
  await page.getByLabel('Timeout (seconds, empty for none)').fill('600');
  await page.getByLabel(/Inactivity timeout/).fill('0');
  await page.locator('.env-row').getByLabel('Name').fill('LOG_LEVEL');
  await page.locator('.env-row').getByLabel('Value').fill('debug');
  await expect(page.locator('.field-error')).toHaveCount(0);
  await expect(page.locator('#model option')).not.toHaveCount(0);
  expect(consoleErrors).toEqual([]);
});

test('new session: the server refusal is shown, not swallowed', async ({ page, consoleErrors }) => {
  await page.goto('/projects/no-such-project/new');
  await hydrated(page);
  await page.getByLabel('What should the agent do?').fill('hello');
  await page.getByRole('button', { name: 'Start session' }).click();
  await expect(page.locator('.banner[role=alert]')).toContainText('no-such-project');
  await expect(page).toHaveURL(/\/new$/);
  // The refusal is a 404, as over REST; nothing else went wrong.
  dropRefusals(consoleErrors, 404);
  expect(consoleErrors).toEqual([]);
});
