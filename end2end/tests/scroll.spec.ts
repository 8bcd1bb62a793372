import { test, expect, hydrated, api, newProject, newSession } from './fixtures';
import { PORT } from '../playwright.config';

/**
 * A long session: the page opens at its latest event with only the latest events loaded,
 * loads earlier ones when the reader scrolls to the top, follows new events while the
 * reader is at the bottom, and offers a way back to the latest when the reader is not.
 */
test('a long session opens at the latest event, loads earlier ones on the way up, and follows', async ({ page, consoleErrors }) => {
  test.setTimeout(180_000);
  const project = await newProject(PORT, 'scroll');
  // ~2 events per turn: well over the 200 the page opens with.
  const session = await newSession(PORT, project, { initialPrompt: 'loop', environmentVariables: { MAX_TURNS: '150' } });
  const url = `/projects/${project}/sessions/${session}`;
  await expect
    .poll(async () => (await api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${session}`)).status?.phase, { timeout: 120_000 })
    .toMatch(/Completed|Failed/);

  await page.goto(url);
  await hydrated(page);
  const entries = page.locator('.transcript .entry');
  // At the bottom, showing the end of the log; the prompt is not loaded yet.
  await expect(entries.last()).toBeInViewport();
  await expect(page.locator('.entry.user', { hasText: 'loop' })).toHaveCount(0);
  await expect(page.locator('.load-earlier')).toBeVisible();
  await expect(page.locator('.jump-latest')).toHaveCount(0);

  // Scrolled to the top, earlier events load (the reader stays where they were) until the
  // very first one, the prompt, is there.
  await expect(async () => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await expect(page.locator('.entry.user', { hasText: 'loop' })).toHaveCount(1, { timeout: 1_000 });
  }).toPass({ timeout: 30_000 });
  await expect(page.locator('.load-earlier')).toHaveCount(0);
  // Away from the bottom, a control leads back to the latest event.
  const jump = page.locator('.jump-latest');
  await expect(jump).toBeVisible();
  await jump.click();
  await expect(entries.last()).toBeInViewport();
  await expect(jump).toHaveCount(0);

  // At the bottom, a follow-up's answer comes into view by itself.
  await page.getByLabel('Message to the agent').fill('say the word follow');
  await page.getByLabel('Message to the agent').press('Enter');
  const answer = page.locator('.entry.agent', { hasText: 'You said: say the word follow' });
  await expect(answer).toBeVisible({ timeout: 60_000 });
  await expect(answer).toBeInViewport();
  expect(consoleErrors).toEqual([]);
});
