import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, expect, api, hydrated, signIn, workspace } from './fixtures';
import { NO_CREDENTIALS_PORT, PORT } from '../playwright.config';

test('a session writes a file, streams live, and completes', async ({ page, consoleErrors }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/projects$/);
  await page.goto('/projects/default/new');
  await hydrated(page);

  await page.getByLabel('What should the agent do?').fill('Please create hello.txt slowly');
  await page.getByLabel('Finish when the agent has answered').check();
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

test('an interactive session waits for you, warm, and answers a follow-up at once', async ({ page, consoleErrors }) => {
  await page.goto('/projects/default/new');
  await hydrated(page);
  await page.getByLabel('What should the agent do?').fill('say hello');
  await page.getByRole('button', { name: 'Start session' }).click();
  await expect(page).toHaveURL(/\/projects\/default\/sessions\/session-[0-9a-f-]+$/);
  const session = page.url().split('/').pop()!;

  // Answered: still Running, and the header says it is your turn.
  const phase = page.locator('.session-header [data-phase]');
  const agent = page.locator('.session-header [data-agent]');
  await expect(page.locator('.entry.agent').last()).toContainText('You said: say hello', { timeout: 60_000 });
  await expect(agent).toHaveAttribute('data-agent', 'waiting');
  await expect(agent).toHaveText('Waiting for you');
  await expect(phase).toHaveAttribute('data-phase', 'Running');

  // The project page lists it first, under "Waiting for you".
  const projectPage = await page.context().newPage();
  await projectPage.goto('/projects/default');
  await hydrated(projectPage);
  const waiting = projectPage.getByRole('region', { name: 'Waiting for you' });
  await expect(waiting.locator(`li[data-session="${session}"]`)).toBeVisible();
  await expect(projectPage.locator(`tr[data-session="${session}"] [data-agent="waiting"]`)).toBeVisible();

  // A follow-up: working, then answered by the same agent; never a second run.
  const composer = page.getByLabel('Message to the agent');
  await composer.fill('remember the word pineapple');
  await composer.press('Enter');
  await expect(page.locator('.entry.agent').last()).toContainText('You said: remember the word pineapple', { timeout: 30_000 });
  await expect(agent).toHaveAttribute('data-agent', 'waiting');
  await expect(phase).toHaveAttribute('data-phase', 'Running');
  const exported = await api(PORT, 'GET', `/api/projects/default/agentic-sessions/${session}/export`);
  const kinds: string[] = exported.events.map((e: { event: { type: string } }) => e.event.type);
  expect(kinds.filter((k) => k === 'agent_started')).toHaveLength(1);
  expect(kinds.filter((k) => k === 'turn_result')).toHaveLength(2);

  // Stopped by you: the waiting list forgets it.
  await page.locator('.session-header').getByRole('button', { name: 'Stop' }).click();
  await expect(phase).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  await expect(agent).toHaveCount(0);
  await projectPage.reload();
  await hydrated(projectPage);
  await expect(projectPage.locator(`li[data-session="${session}"]`)).toHaveCount(0);
  await projectPage.close();
  expect(consoleErrors).toEqual([]);
});

test('the agent asks a question; the answer given on the page goes back and the turn goes on', async ({ page, consoleErrors }) => {
  const created = await api(PORT, 'POST', '/api/projects/default/agentic-sessions', {
    initialPrompt: 'ask: Which color should the button be? | Red | Blue',
  });
  const session = created.name;
  await page.goto(`/projects/default/sessions/${session}`);
  await hydrated(page);

  // The question, its options as a form; the header says the agent waits for you.
  const form = page.getByRole('form', { name: 'The agent asks' });
  await expect(form).toBeVisible({ timeout: 60_000 });
  await expect(form).toContainText('Which color should the button be?');
  await expect(page.locator('.entry.ask')).toContainText('Waiting for an answer');
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'asking');

  // A reload keeps it.
  await page.reload();
  await hydrated(page);
  await expect(form).toBeVisible();

  // Another viewer sees the same question, and sees it answered.
  const other = await page.context().newPage();
  await other.goto(`/projects/default/sessions/${session}`);
  await hydrated(other);
  const otherForm = other.getByRole('form', { name: 'The agent asks' });
  await expect(otherForm).toBeVisible({ timeout: 30_000 });

  await form.getByLabel('Blue').check();
  await form.getByRole('button', { name: 'Answer' }).click();
  await expect(form).toHaveCount(0);
  await expect(page.locator('.entry.ask')).toContainText('answered: Blue');
  await expect(otherForm).toHaveCount(0, { timeout: 30_000 });
  await expect(other.locator('.entry.ask')).toContainText('answered: Blue');
  await other.close();
  await expect(page.locator('.entry.agent').last()).toContainText('Got your answer', { timeout: 30_000 });
  await expect(page.locator('.entry.agent').last()).toContainText('Blue');
  await api(PORT, 'POST', `/api/projects/default/agentic-sessions/${session}/stop`);
  expect(consoleErrors).toEqual([]);
});

test('a session that asks before acting: deny one edit with a reason, allow the next; deny a Bash command, allow another', async ({ page, consoleErrors }) => {
  const created = await api(PORT, 'POST', '/api/projects/default/agentic-sessions', {
    initialPrompt: 'create page-denied.txt',
    permissionMode: 'ask',
  });
  const session = created.name;
  await page.goto(`/projects/default/sessions/${session}`);
  await hydrated(page);

  const approval = page.getByRole('form', { name: 'The agent asks to act' });
  await expect(approval).toBeVisible({ timeout: 60_000 });
  await expect(approval).toContainText('The agent asks to use Write');
  await expect(approval).toContainText('page-denied.txt');
  // The edit's change is shown before it is allowed: what the file would hold, added.
  await expect(approval.locator('.ask-diff .diff-line.added').first()).toBeVisible();
  await expect(page.locator('.entry.ask.approval').first().locator('.diff-line.added').first()).toBeVisible();
  await approval.getByLabel('Reason').fill('not that file');
  await approval.getByRole('button', { name: 'Deny' }).click();
  await expect(page.locator('.entry.ask.approval').first()).toContainText('Denied by');
  await expect(page.locator('.entry.ask.approval').first()).toContainText('not that file');
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });

  const composer = page.getByLabel('Message to the agent');
  await composer.fill('create page-allowed.txt');
  await composer.press('Enter');
  await expect(approval).toBeVisible({ timeout: 30_000 });
  await approval.getByRole('button', { name: 'Allow once' }).click();
  await expect(page.locator('.entry.ask.approval').last()).toContainText('Allowed by');
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });
  const dir = path.join(workspace(PORT, 'default', session), 'artifacts');
  expect(fs.existsSync(path.join(dir, 'page-allowed.txt'))).toBe(true);
  expect(fs.existsSync(path.join(dir, 'page-denied.txt'))).toBe(false);

  // Commands too: the card names the tool and shows the command; denied, it never runs.
  await composer.fill('run: touch bash-denied.txt');
  await composer.press('Enter');
  await expect(approval).toBeVisible({ timeout: 30_000 });
  await expect(approval).toContainText('The agent asks to use Bash');
  await expect(approval).toContainText('touch bash-denied.txt');
  await approval.getByLabel('Reason').fill('no commands like that');
  await approval.getByRole('button', { name: 'Deny' }).click();
  await expect(page.locator('.entry.ask.approval').last()).toContainText('Denied by');
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });
  await composer.fill('run: touch bash-allowed.txt');
  await composer.press('Enter');
  await expect(approval).toBeVisible({ timeout: 30_000 });
  await expect(approval).toContainText('touch bash-allowed.txt');
  await approval.getByRole('button', { name: 'Allow once' }).click();
  await expect(page.locator('.entry.ask.approval').last()).toContainText('Allowed by');
  await expect(page.locator('.session-header [data-agent]')).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });
  expect(fs.existsSync(path.join(dir, 'bash-allowed.txt'))).toBe(true);
  expect(fs.existsSync(path.join(dir, 'bash-denied.txt'))).toBe(false);
  await api(PORT, 'POST', `/api/projects/default/agentic-sessions/${session}/stop`);
  expect(consoleErrors).toEqual([]);
});
