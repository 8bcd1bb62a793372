import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { test, expect, hydrated, api, newProject, git, bareRepo } from './fixtures';
import { PORT } from '../playwright.config';

/** A stand-in for GitHub's pull-request endpoint, recording what it is asked. */
async function forge(): Promise<{ url: string; calls: { path: string; auth: string; body: any }[]; close: () => void }> {
  const calls: { path: string; auth: string; body: any }[] = [];
  let url = '';
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      calls.push({ path: req.url ?? '', auth: String(req.headers.authorization ?? ''), body: data ? JSON.parse(data) : null });
      if (req.method === 'POST' && req.url === '/repos/acme/app/pulls') {
        res.writeHead(201, { 'content-type': 'application/json' });
        // On the forge's own host, as GitHub's links are (links elsewhere are refused).
        res.end(JSON.stringify({ number: 7, html_url: `${url}/acme/app/pull/7` }));
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls, close: () => server.close() };
}

test('git delivery: the push and the pull request appear in the transcript', async ({ page, consoleErrors }) => {
  const dir = fs.mkdtempSync(path.join(process.env.E2E_DATA_DIR!, 'git-'));
  const bare = bareRepo(dir);
  const gh = await forge();
  try {
    const project = await newProject(PORT, 'git');
    await api(PORT, 'PUT', `/api/projects/${project}/runner-secrets`, {
      data: { GITHUB_TOKEN: 'ghp_e2etoken', GITHUB_API_URL: gh.url },
    });

    await page.goto(`/projects/${project}/new`);
    await hydrated(page);
    await page.getByLabel('What should the agent do?').fill('create notes.md');
    await page.getByRole('button', { name: 'Add repository' }).click();
    const row = page.locator('.repo-row');
    await row.getByLabel('URL').fill(`file://${bare}`);
    await row.getByLabel('push').check();
    await page.getByLabel('Finish when the agent has answered').check();
    await page.getByRole('button', { name: 'Start session' }).click();
    await expect(page).toHaveURL(/sessions\/session-/);
    const session = page.url().split('/').pop()!;

    await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });
    const push = page.locator('.entry.git').first();
    await expect(push).toContainText(`Pushed app to branch ambient/${session}`);
    const pr = page.locator('.entry.git.pr');
    await expect(pr).toContainText('Pull request #7 for app');
    await expect(pr.locator('a')).toHaveAttribute('href', `${gh.url}/acme/app/pull/7`);

    // The branch really is in the remote, and the forge was asked once, with the token.
    expect(git(bare, 'branch', '--list').split('\n').map((b) => b.trim())).toContain(`ambient/${session}`);
    expect(git(bare, 'ls-tree', '--name-only', `ambient/${session}`)).toContain('notes.md');
    expect(gh.calls).toHaveLength(1);
    expect(gh.calls[0].auth).toBe('Bearer ghp_e2etoken');
    expect(gh.calls[0].body.head).toBe(`ambient/${session}`);
  } finally {
    gh.close();
  }
  expect(consoleErrors).toEqual([]);
});
