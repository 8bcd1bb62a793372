import { test, expect, hydrated, api, newProject, newSession, seqs, signIn } from './fixtures';
import { PORT } from '../playwright.config';

const phaseOf = (page: import('@playwright/test').Page) => page.locator('.session-header [data-phase]');

test('session page: follow-ups and their answers, Markdown, thinking, tool cards, result, rename', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'talk');
  const session = await newSession(PORT, project, { initialPrompt: 'think hard', displayName: 'chatty' });
  await page.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(page);
  await expect(phaseOf(page)).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });

  // The header: model, when the run started and how long it took.
  const meta = page.locator('.session-header .meta');
  await expect(meta).toContainText(/claude-/);
  await expect(meta).toContainText(/started .+ · \d/);

  // Thinking is there, collapsed until asked for.
  const thinking = page.locator('.entry.thinking details');
  await expect(thinking).toHaveCount(1);
  await expect(thinking).not.toHaveAttribute('open', /.*/);
  await expect(thinking.locator('.text')).toBeHidden();
  await thinking.locator('summary').click();
  await expect(thinking.locator('.text')).toContainText('Let me think about this.');
  await expect(page.locator('.entry.agent').last()).toContainText('Thought it through.');

  // The result card.
  const result = page.locator('.entry.result').last();
  for (const term of ['Turns', 'Tokens', 'Cost', 'Duration', 'Exit code']) await expect(result).toContainText(term);
  await expect(result.locator('dd').nth(1)).toContainText(/\d+ in \/ \d+ out/);

  // Composer: Shift+Enter is a new line, Enter sends; the answer is Markdown with highlighted code.
  const composer = page.getByLabel('Message to the agent');
  await composer.focus();
  await page.keyboard.type('**bold** and `inline`');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('```rust');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('fn main() {}');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('```');
  await expect(composer).toHaveValue('**bold** and `inline`\n```rust\nfn main() {}\n```');
  await page.keyboard.press('Enter');
  await expect(composer).toHaveValue('');
  await expect(page.locator('.entry.user').last()).toContainText('**bold** and `inline`');
  const answer = page.locator('.entry.agent').last();
  await expect(answer.locator('strong')).toHaveText('bold', { timeout: 30_000 });
  await expect(answer.locator('p code')).toHaveText('inline');
  await expect(answer.locator('pre.code[data-lang="rust"] .tok-kw').first()).toHaveText('fn');
  await expect(phaseOf(page)).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });

  // A Bash call: its command and its output.
  await composer.fill('run: echo hello-from-bash');
  await composer.press('Enter');
  const bash = page.locator('.entry.tool[data-tool="Bash"]').last();
  await expect(bash.locator('pre.command')).toHaveText('$ echo hello-from-bash', { timeout: 30_000 });
  await expect(bash.locator('.tool-result')).toContainText('hello-from-bash', { timeout: 30_000 });
  await expect(bash).toHaveAttribute('data-status', 'done');
  await expect(page.locator('.entry.agent').last()).toContainText('Done: Bash finished.');

  // Every entry once, in order.
  const order = await seqs(page);
  expect(order).toEqual([...order].sort((a, b) => a - b));
  expect(new Set(order).size).toBe(order.length);

  // Rename in place; it sticks.
  await page.getByRole('button', { name: 'Rename session' }).click();
  const title = page.getByLabel('Session name');
  await title.fill('renamed in the browser');
  await title.press('Enter');
  await expect(page.locator('.session-header h1')).toContainText('renamed in the browser');
  await expect
    .poll(async () => (await api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${session}`)).spec.displayName)
    .toBe('renamed in the browser');
  await page.reload();
  await expect(page.locator('.session-header h1')).toContainText('renamed in the browser');
  expect(consoleErrors).toEqual([]);
});

test('session page: interrupt a slow turn, then keep talking', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'intr');
  const session = await newSession(PORT, project, { initialPrompt: 'slow 80' });
  await page.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(page);

  const agent = page.locator('.entry.agent').last();
  await expect(agent).toContainText('chunk 3', { timeout: 30_000 });
  const interrupt = page.getByRole('button', { name: 'Interrupt' });
  await expect(interrupt).toBeVisible();
  await interrupt.click();
  await expect(page.locator('.entry.control')).toContainText('asked to interrupt');
  await expect(interrupt).toBeHidden({ timeout: 10_000 });
  // 80 chunks take 20 s: the turn ended long before its last one.
  await expect(page.locator('.transcript')).not.toContainText('chunk 80');

  await page.getByLabel('Message to the agent').fill('after the interrupt');
  await page.getByLabel('Message to the agent').press('Enter');
  await expect(page.locator('.entry.agent').last()).toContainText('You said: after the interrupt', { timeout: 30_000 });
  await expect(page.locator('.transcript')).not.toContainText('chunk 80');
  expect(consoleErrors).toEqual([]);
});

test('session page: stop, then continue', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'stop');
  const session = await newSession(PORT, project, { initialPrompt: 'run: echo started; sleep 600' });
  await page.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(page);
  await expect(page.locator('.entry.tool[data-tool="Bash"]')).toHaveAttribute('data-status', 'running', { timeout: 30_000 });

  await page.locator('.session-actions').getByRole('button', { name: 'Stop' }).click();
  await expect(phaseOf(page)).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await expect(page.locator('.session-actions').getByRole('button', { name: 'Stop' })).toBeHidden();

  await page.locator('.session-actions').getByRole('button', { name: 'Continue' }).click();
  await expect(phaseOf(page)).not.toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await page.getByLabel('Message to the agent').fill('back again');
  await page.getByLabel('Message to the agent').press('Enter');
  await expect(page.locator('.entry.agent').last()).toContainText('You said: back again', { timeout: 60_000 });
  await expect(phaseOf(page)).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });
  expect(consoleErrors).toEqual([]);
});

test('session page: a second browser sees the same transcript', async ({ page, browser, consoleErrors }) => {
  const project = await newProject(PORT, 'two');
  const session = await newSession(PORT, project, { initialPrompt: 'create notes.md slowly' });
  const url = `/projects/${project}/sessions/${session}`;
  await page.goto(url);
  await hydrated(page);
  const other = await (await browser.newContext({ baseURL: `http://127.0.0.1:${PORT}` })).newPage();
  await signIn(other, PORT);
  const otherErrors: string[] = [];
  other.on('console', (m) => m.type() === 'error' && otherErrors.push(m.text()));
  await other.goto(url);
  await hydrated(other);

  for (const p of [page, other]) {
    await expect(phaseOf(p)).toHaveAttribute('data-phase', 'Completed', { timeout: 60_000 });
  }
  const snapshot = (p: import('@playwright/test').Page) =>
    p.locator('.transcript [data-seq]').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-seq')} ${e.textContent}`));
  const mine = await snapshot(page);
  expect(mine.length).toBeGreaterThan(3);
  expect(await snapshot(other)).toEqual(mine);
  // And a fresh load (server-rendered) agrees with both.
  await other.reload();
  await hydrated(other);
  expect(await snapshot(other)).toEqual(mine);
  expect(otherErrors).toEqual([]);
  expect(consoleErrors).toEqual([]);
});

test('the transcript is in the server-rendered HTML; dark mode follows the system', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'ssr');
  const session = await newSession(PORT, project, { initialPrompt: 'say the magic word' });
  await expect
    .poll(async () => (await api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${session}`)).status?.phase, { timeout: 60_000 })
    .toBe('Completed');
  const html = await (await page.request.get(`/projects/${project}/sessions/${session}`)).text();
  expect(html).toContain('You said: say the magic word');
  expect(html).toContain('Run finished');

  await page.emulateMedia({ colorScheme: 'light' });
  await page.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(page);
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await bg();
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await bg();
  expect(dark).not.toEqual(light);

  // Keyboard only: Tab reaches the composer; Enter sends.
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement?.id === 'composer')) break;
  }
  await expect(page.getByLabel('Message to the agent')).toBeFocused();
  await page.keyboard.type('typed without a mouse');
  await page.keyboard.press('Enter');
  await expect(page.locator('.entry.agent').last()).toContainText('You said: typed without a mouse', { timeout: 30_000 });
  expect(consoleErrors).toEqual([]);
});
