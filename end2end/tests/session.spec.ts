import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, expect, hydrated, signIn, workspace } from './fixtures';
import { NO_CREDENTIALS_PORT, PORT } from '../playwright.config';

test('a session writes a file, streams live, and completes', async ({ page, consoleErrors }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/projects$/);
  await page.goto('/projects/default/new');
  await hydrated(page);

  await page.getByLabel('What should the agent do?').fill('Please create hello.txt slowly');
  await page.getByRole('button', { name: 'Start session' }).click();
  await expect(page).toHaveURL(/\/projects\/default\/sessions\/session-[0-9a-f-]+$/);
  const session = page.url().split('/').pop()!;

  // While the agent still works: its message and the tool call are on the page.
  const phase = page.locator('.session-header [data-phase]');
  await expect(page.locator('.entry.tool[data-tool="Write"]')).toBeVisible();
  await expect(page.locator('.entry.tool[data-tool="Write"]')).toContainText('hello.txt');
  await expect(page.locator('.entry.agent').first()).toContainText("I'll create hello.txt.");
  await expect(phase).toHaveAttribute('data-phase', 'Running');

  // Then the closing text streams in and the run completes.
  await expect(phase).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });
  await expect(page.locator('.entry.agent').last()).toContainText('chunk 12');
  await expect(page.locator('.entry.result')).toContainText('Run finished');
  // The Write card shows the file as an all-added diff, and that the tool is done.
  const write = page.locator('.entry.tool[data-tool="Write"]');
  await expect(write).toHaveAttribute('data-status', 'done');
  await expect(write.locator('.diff-line.added')).toHaveText(['+Hello from the mock Anthropic API!']);

  const file = path.join(workspace(PORT, 'default', session), 'artifacts', 'hello.txt');
  expect(fs.readFileSync(file, 'utf8')).toBe('Hello from the mock Anthropic API!\n');
  expect(consoleErrors).toEqual([]);
});

test('a session without credentials fails fast with a clear error', async ({ page, consoleErrors }) => {
  await signIn(page, NO_CREDENTIALS_PORT);
  await page.goto(`http://127.0.0.1:${NO_CREDENTIALS_PORT}/projects/default/new`);
  await hydrated(page);
  await page.getByLabel('What should the agent do?').fill('create hello.txt');
  await page.getByRole('button', { name: 'Start session' }).click();
  await expect(page).toHaveURL(/sessions\/session-/);

  const started = Date.now();
  await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Failed', { timeout: 15_000 });
  expect(Date.now() - started).toBeLessThan(15_000);
  await expect(page.locator('.entry.error').first()).toContainText('No model credentials');
  await expect(page.locator('.entry.error').first()).toContainText('ANTHROPIC_API_KEY');
  expect(consoleErrors).toEqual([]);
});
