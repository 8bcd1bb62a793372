import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, expect, api, hydrated, workspace } from './fixtures';
import { PORT } from '../playwright.config';

test('the Files panel browses the workspace, shows a file, uploads one the agent is told about, and still browses once the session stopped', async ({ page, consoleErrors }) => {
  const created = await api(PORT, 'POST', '/api/projects/default/agentic-sessions', {
    initialPrompt: 'create notes.md',
  });
  const session = created.name;
  await page.goto(`/projects/default/sessions/${session}`);
  await hydrated(page);
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 60_000 });

  // Opened, the panel (its own chunk) lists the workspace's root: the agent's folders only.
  await page.getByRole('button', { name: 'Files', exact: true }).first().click();
  const panel = page.getByRole('region', { name: 'Workspace files' });
  await expect(panel.locator('li.file.dir[data-path="artifacts"]')).toBeVisible({ timeout: 30_000 });
  await expect(panel.locator('li[data-path=".ambient"]')).toHaveCount(0);

  // Into artifacts/, then the file: its text, and a download link.
  await panel.getByRole('button', { name: 'artifacts/' }).click();
  await panel.getByRole('button', { name: 'notes.md' }).click();
  await expect(panel.locator('.file-text')).toContainText('Hello from the mock Anthropic API!');
  await expect(panel.getByRole('link', { name: 'Download', exact: true })).toHaveAttribute(
    'href', `/api/projects/default/agentic-sessions/${session}/workspace/artifacts/notes.md`);

  // An upload lands in file-uploads/ under a clean name.
  await panel.getByLabel('Upload a file').setInputFiles({ name: 'my data.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b\n1,2\n') });
  await expect(panel.getByRole('status')).toContainText('Uploaded to file-uploads/my_data.csv');
  const uploaded = path.join(workspace(PORT, 'default', session), 'file-uploads', 'my_data.csv');
  expect(fs.readFileSync(uploaded, 'utf8')).toBe('a,b\n1,2\n');

  // No repositories: the Changes tab says so.
  await panel.getByRole('tab', { name: 'Changes' }).click();
  await expect(panel).toContainText('The session has no repositories.');

  // Stopped, the session's files are still there: a files runner serves them.
  await api(PORT, 'POST', `/api/projects/default/agentic-sessions/${session}/stop`);
  await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await page.reload();
  await hydrated(page);
  await page.getByRole('button', { name: 'Files', exact: true }).first().click();
  const stopped = page.getByRole('region', { name: 'Workspace files' });
  await expect(stopped.locator('li.file.dir[data-path="artifacts"]')).toBeVisible({ timeout: 30_000 });
  await stopped.getByRole('button', { name: 'artifacts/' }).click();
  await stopped.getByRole('button', { name: 'notes.md' }).click();
  await expect(stopped.locator('.file-text')).toContainText('Hello from the mock Anthropic API!');
  await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Stopped');
  expect(consoleErrors).toEqual([]);
});
