import { test, expect, api, hydrated, newProject } from './fixtures';
import { PORT } from '../playwright.config';

// The catalogue (playwright.config.ts makes it): "Bug fix" (a startup prompt, a /triage
// command) and "Review".
test('a session starts from a catalogue workflow, runs one of its slash commands, and switches workflow', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'flow');
  await page.goto(`/projects/${project}/new`);
  await hydrated(page);

  // The picker fills the workflow's fields from the catalogue.
  await page.locator('#workflow-pick').selectOption({ label: 'Bug fix' });
  await expect(page.locator('#workflow-path')).toHaveValue('workflows/bugfix');
  await expect(page.locator('#workflow-url')).toHaveValue(/^file:\/\/.*catalogue$/);
  await page.locator('#prompt').fill('hello there');
  await page.getByRole('button', { name: 'Start session' }).click();
  await expect(page).toHaveURL(/\/sessions\/session-/, { timeout: 15_000 });
  const session = page.url().split('/').pop()!;
  await hydrated(page);

  // The header names it; the transcript says it started with its startup prompt.
  await expect(page.locator('.workflow-name')).toHaveText('Workflow: Bug fix', { timeout: 60_000 });
  await expect(page.locator('.transcript')).toContainText('started with its startup prompt');
  await expect(page.locator('.entry.agent').first()).toContainText('hello there', { timeout: 30_000 });
  const agent = page.locator('.session-header [data-agent]');
  await expect(agent).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });

  // Typing "/" offers the workflow's commands; one is chosen and sent.
  const composer = page.getByLabel('Message to the agent');
  await composer.fill('/tr');
  const offered = page.locator('.slash-commands .slash-command');
  await expect(offered).toHaveCount(1);
  await expect(offered).toContainText('/triage');
  await expect(offered).toContainText('Sort the bugs');
  await offered.click();
  await expect(composer).toHaveValue('/triage ');
  await composer.pressSequentially('the login bug');
  await expect(offered).toHaveCount(0);
  await composer.press('Enter');
  await expect(page.locator('.entry.agent').last()).toContainText('Triage these bugs: the login bug', { timeout: 30_000 });
  await expect(agent).toHaveAttribute('data-agent', 'waiting', { timeout: 30_000 });

  // The Workflow panel switches to the review workflow: the session restarts in it, its
  // conversation kept.
  await page.locator('.session-header').getByRole('button', { name: 'Workflow' }).click();
  const panel = page.getByRole('region', { name: 'Workflow' });
  await panel.locator('#workflow-pick').selectOption({ label: 'Review' });
  await expect(panel.locator('#workflow-path')).toHaveValue('workflows/review');
  await panel.getByRole('button', { name: 'Switch workflow' }).click();
  await expect(panel.getByRole('status')).toContainText('Done');
  await expect(page.locator('.transcript')).toContainText('switch the workflow to');
  await expect(page.locator('.workflow-name')).toHaveText('Workflow: Review', { timeout: 60_000 });
  const phase = page.locator('.session-header [data-phase]');
  await expect(phase).toHaveAttribute('data-phase', 'Running', { timeout: 30_000 });
  const s = await api(PORT, 'GET', `/api/projects/${project}/agentic-sessions/${session}`);
  expect(s.spec.activeWorkflow.path).toBe('workflows/review');

  // Stopped, and seen to be: its runner is gone before the run's data is removed.
  await api(PORT, 'POST', `/api/projects/${project}/agentic-sessions/${session}/stop`);
  await expect(phase).toHaveAttribute('data-phase', 'Stopped', { timeout: 30_000 });
  expect(consoleErrors).toEqual([]);
});
