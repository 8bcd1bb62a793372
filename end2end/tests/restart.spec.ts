import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, expect, hydrated, installSecret, seqs, signIn } from './fixtures';
import { MOCK_PORT } from '../playwright.config';

// A server of its own, so this test may kill and restart it.
const RESTART_PORT = 3104;
const root = path.resolve(__dirname, '../..');

function startServer(dataDir: string): ChildProcess {
  const child = spawn(`${root}/target/release/server`, [], {
    cwd: root,
    stdio: 'ignore',
    env: {
      ...process.env,
      AMBIENT_ADDR: `127.0.0.1:${RESTART_PORT}`,
      AMBIENT_DATA_DIR: dataDir,
      AMBIENT_CLAUDE_BIN: path.join(root, 'tools/claude-code/node_modules/.bin/claude'),
      AMBIENT_USER: 'e2e tester',
      ANTHROPIC_BASE_URL: `http://127.0.0.1:${MOCK_PORT}`,
      ANTHROPIC_API_KEY: 'sk-e2e',
      ANTHROPIC_AUTH_TOKEN: '',
      RUST_LOG: 'info',
    },
  });
  return child;
}

async function healthy() {
  await expect
    .poll(async () => fetch(`http://127.0.0.1:${RESTART_PORT}/health`).then((r) => r.ok, () => false), { timeout: 30_000 })
    .toBe(true);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('a server restart during a session: the page says so, then recovers by itself', async ({ page, consoleErrors }) => {
  const dataDir = fs.mkdtempSync(path.join(process.env.E2E_DATA_DIR!, 'restart-'));
  let server = startServer(dataDir);
  try {
    await healthy();
    await signIn(page, RESTART_PORT, dataDir);
    const created = await fetch(`http://127.0.0.1:${RESTART_PORT}/api/projects/default/agentic-sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${installSecret(RESTART_PORT, dataDir)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ initialPrompt: 'slow 60', stopOnRunFinished: true }),
    });
    expect(created.status).toBe(201);
    const session = (await created.json()).name;
    await page.goto(`http://127.0.0.1:${RESTART_PORT}/projects/default/sessions/${session}`);
    await hydrated(page);
    const conn = page.locator('[data-conn]');
    await expect(conn).toHaveAttribute('data-conn', 'live');
    await expect(page.locator('.entry.agent').last()).toContainText('chunk 4', { timeout: 30_000 });

    // The server dies mid-turn (the runner keeps working); the page shows it is reconnecting.
    await stop(server);
    await expect(conn).toHaveAttribute('data-conn', 'reconnecting', { timeout: 20_000 });
    await expect(conn).toHaveText('reconnecting…');

    server = startServer(dataDir);
    await healthy();
    await expect(conn).toHaveAttribute('data-conn', 'live', { timeout: 30_000 });
    await expect(page.locator('.session-header [data-phase]')).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });

    // Nothing missing, nothing twice: the whole reply, each entry once, same as a fresh load.
    const text = await page.locator('.entry.agent').last().textContent();
    for (let n = 1; n <= 60; n++) expect(text).toMatch(new RegExp(`chunk ${n}(\\s|$)`));
    const live = await seqs(page);
    expect(new Set(live).size).toBe(live.length);
    const shown = await page.locator('.transcript [data-seq]').evaluateAll((els) => els.map((e) => e.textContent));
    await page.reload();
    await hydrated(page);
    expect(await seqs(page)).toEqual(live);
    expect(await page.locator('.transcript [data-seq]').evaluateAll((els) => els.map((e) => e.textContent))).toEqual(shown);
  } finally {
    await stop(server);
  }
  // While the server was down the browser logged its failed reconnection attempts; those are
  // the network's, not the page's.
  const own = consoleErrors.filter((e) => !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(e));
  consoleErrors.splice(0, consoleErrors.length, ...own);
  expect(consoleErrors).toEqual([]);
});
