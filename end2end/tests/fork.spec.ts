import { test, expect, api, hydrated, newProject, newSession, workspace } from './fixtures';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PORT } from '../playwright.config';

// Three turns, then a fork after the second: the fork's agent knows the first two and not
// the third, and has the file the first wrote.
test('a session forked at turn 2 continues from there in a copy of its files', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'fork');
  const source = await newSession(PORT, project, { initialPrompt: 'create notes.txt', stopOnRunFinished: false });
  await page.goto(`/projects/${project}/sessions/${source}`);
  await hydrated(page);
  const agent = page.locator('.session-header [data-agent]');
  await expect(agent).toHaveAttribute('data-agent', 'waiting', { timeout: 60_000 });
  const composer = page.getByLabel('Message to the agent');
  for (const said of ['the second thing', 'the third thing']) {
    await composer.fill(said);
    await composer.press('Enter');
    await expect(page.locator('.entry.agent').last()).toContainText(`You said: ${said}`, { timeout: 30_000 });
    await expect(agent).toHaveAttribute('data-agent', 'waiting');
  }

  // The panel lists the turns, the last chosen; turn 2 is picked and a message written.
  await page.locator('.session-header').getByRole('button', { name: 'Fork' }).click();
  const turn = page.locator('#fork-turn');
  await expect(turn.locator('option')).toHaveCount(3);
  await expect(turn).toHaveValue('3');
  await expect(turn.locator('option').nth(1)).toContainText('Turn 2: You said: the second thing');
  await turn.selectOption('2');
  const fork = page.locator('.fork-panel').getByRole('button', { name: 'Fork' });
  await expect(fork).toBeDisabled();
  await page.locator('#fork-prompt').fill('recall');
  await fork.click();

  // The fork's page: where it came from, and its agent's memory of turns 1 and 2 only.
  // The source's own URL matches the pattern too: wait until the page is another session's.
  await page.waitForURL(
    (u) => u.pathname.startsWith(`/projects/${project}/sessions/session-`) && !u.pathname.endsWith(`/${source}`),
    { timeout: 15_000 },
  );
  const forked = page.url().split('/').pop()!;
  expect(forked).not.toBe(source);
  await hydrated(page);
  await expect(page.locator('.forked-from')).toHaveText(`Forked from ${source} after turn 2`);
  await expect(page.locator('.entry.agent').last()).toContainText('I remember: create notes.txt | the second thing', { timeout: 60_000 });
  await expect(page.locator('.entry.agent').last()).not.toContainText('the third thing');
  const copied = path.join(workspace(PORT, project, forked), 'artifacts', 'notes.txt');
  expect(fs.existsSync(copied)).toBe(true);

  // The source goes on unchanged.
  const turns = await api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${source}/turns`);
  expect(turns.map((t: { turn: number }) => t.turn)).toEqual([1, 2, 3]);
  await page.locator('.forked-from a').click();
  await expect(page).toHaveURL(new RegExp(`/sessions/${source}$`));
  expect(consoleErrors).toEqual([]);
});
