import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { test, expect, api, bareRepo, hydrated, workspace } from './fixtures';
import { PORT } from '../playwright.config';

test('the Files panel browses the workspace, shows a file and its repository\'s diff, downloads the tarball, uploads a file the agent then reads, and still browses once the session stopped', async ({ page, consoleErrors }) => {
  const dir = fs.mkdtempSync(path.join(process.env.E2E_DATA_DIR!, 'files-'));
  const bare = bareRepo(dir);
  // The agent rewrites the repository's README: a change to a tracked file, with a diff.
  const created = await api(PORT, 'POST', '/api/projects/default/agentic-sessions', {
    initialPrompt: 'create README.md',
    repos: [{ url: `file://${bare}` }],
  });
  const session = created.name;
  await page.goto(`/projects/default/sessions/${session}`);
  await hydrated(page);
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 60_000 });

  // Opened, the panel (its own chunk) lists the workspace's root: the agent's folders only.
  await page.getByRole('button', { name: 'Files', exact: true }).first().click();
  const panel = page.getByRole('region', { name: 'Workspace files' });
  await expect(panel.locator('li.file.dir[data-path="repos"]')).toBeVisible({ timeout: 30_000 });
  await expect(panel.locator('li[data-path=".ambient"]')).toHaveCount(0);

  // Into the repository (cloned into repos/app), then the file: its text, a download link.
  await panel.getByRole('button', { name: 'repos/' }).click();
  await panel.getByRole('button', { name: 'app/' }).click();
  await panel.getByRole('button', { name: 'README.md' }).click();
  await expect(panel.locator('.file-text')).toContainText('Hello from the mock Anthropic API!');
  await expect(panel.getByRole('link', { name: 'Download', exact: true })).toHaveAttribute(
    'href', `/api/projects/default/agentic-sessions/${session}/workspace/repos/app/README.md`);

  // The Changes tab: the repository, its branch, the changed file and its diff, the old
  // line out, the new in.
  await panel.getByRole('tab', { name: 'Changes' }).click();
  const repo = panel.locator('article.repo-state[data-repo="app"]');
  await expect(repo.getByRole('heading')).toContainText('repos/app on main', { timeout: 30_000 });
  await expect(repo.locator('ul.changes')).toContainText('M README.md');
  await expect(repo.locator('.diff-line.removed')).toContainText('# app');
  await expect(repo.locator('.diff-line.added')).toContainText('Hello from the mock Anthropic API!');

  // The whole workspace as a tarball: what the link serves is a gzip of a tar with the file.
  const archive = panel.getByRole('link', { name: 'Download workspace (.tar.gz)' });
  const href = await archive.getAttribute('href');
  expect(href).toBe(`/api/projects/default/agentic-sessions/${session}/workspace.tar.gz`);
  const tarball = await page.request.get(href!);
  expect(tarball.status()).toBe(200);
  const tar = zlib.gunzipSync(await tarball.body());
  expect(tar.includes('repos/app/README.md')).toBe(true);
  expect(tar.includes('Hello from the mock Anthropic API!')).toBe(true);

  // An upload lands in file-uploads/ under a clean name...
  await panel.getByRole('tab', { name: 'Files' }).click();
  await panel.getByLabel('Upload a file').setInputFiles({ name: 'my data.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b\n1,2\n') });
  await expect(panel.getByRole('status')).toContainText('Uploaded to file-uploads/my_data.csv');
  const uploaded = path.join(workspace(PORT, 'default', session), 'file-uploads', 'my_data.csv');
  expect(fs.readFileSync(uploaded, 'utf8')).toBe('a,b\n1,2\n');
  // ...and the agent, told of it with the next message, reads it: the tool's output is the file.
  const composer = page.getByLabel('Message to the agent');
  await composer.fill(`call: Read {"file_path": "${uploaded}"}`);
  await composer.press('Enter');
  const read = page.locator('.entry.tool').last();
  await expect(read).toContainText('Read', { timeout: 30_000 });
  await expect(read).toContainText('1,2', { timeout: 30_000 });
  await expect(page.locator('.entry.agent').last()).toContainText('Done: Read finished.', { timeout: 30_000 });

  // Stopped, the session's files are still there: a files runner serves them.
  await api(PORT, 'POST', `/api/projects/default/agentic-sessions/${session}/stop`);
  await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await page.reload();
  await hydrated(page);
  await page.getByRole('button', { name: 'Files', exact: true }).first().click();
  const stopped = page.getByRole('region', { name: 'Workspace files' });
  await expect(stopped.locator('li.file.dir[data-path="repos"]')).toBeVisible({ timeout: 30_000 });
  await stopped.getByRole('button', { name: 'repos/' }).click();
  await stopped.getByRole('button', { name: 'app/' }).click();
  await stopped.getByRole('button', { name: 'README.md' }).click();
  await expect(stopped.locator('.file-text')).toContainText('Hello from the mock Anthropic API!');
  await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Stopped');
  expect(consoleErrors).toEqual([]);
});
