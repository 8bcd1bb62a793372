import { test, expect, api, hydrated, newProject, newSession } from './fixtures';
import { PORT } from '../playwright.config';

// A stdio MCP server with one tool, in a few lines of Python (`claude` starts it in the
// agent's sandbox).
const TINY = [
  'import sys,json',
  'for l in sys.stdin:',
  ' m=json.loads(l);i=m.get("id");k=m["method"];p=m.get("params",{})',
  ' if i is None:continue',
  ' r={"protocolVersion":p["protocolVersion"],"capabilities":{"tools":{}},"serverInfo":{"name":"tiny","version":"1"}} if k=="initialize" else {"tools":[{"name":"add","inputSchema":{"type":"object"}}]} if k=="tools/list" else {"content":[{"type":"text","text":"sum=%d"%(p["arguments"]["a"]+p["arguments"]["b"])}]} if k=="tools/call" else {}',
  ' print(json.dumps({"jsonrpc":"2.0","id":i,"result":r}),flush=True)',
].join('\n');

test('an admin adds MCP servers and a credential in Settings; the session page shows each server and its tools', async ({ page, consoleErrors }) => {
  const project = await newProject(PORT, 'mcp');
  await page.goto(`/projects/${project}/settings`);
  await hydrated(page);

  // A credential for MCP servers: saved, then shown masked only.
  await page.getByLabel('Credential name').fill('MCP_TRACKER_TOKEN');
  await page.getByLabel('Credential value').fill('tok-abcdefghijklmnop-9f2c');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const row = page.locator('.secret-row[data-key="MCP_TRACKER_TOKEN"]');
  await expect(row.locator('.masked')).toHaveText('…9f2c');
  await expect(page.locator('body')).not.toContainText('tok-abcdefghijklmnop');

  // A stdio server whose environment references a credential is refused, saying why.
  const editor = page.locator('#project-mcp');
  await editor.fill(JSON.stringify({ mcpServers: { tiny: { command: 'python3', env: { T: '${MCP_TRACKER_TOKEN}' } } } }));
  await expect(page.locator('#project-mcp ~ .field-error, #project-mcp ~ [role=alert]').first()).toContainText("agent's sandbox");

  // Two servers: one that works, one that cannot start.
  await editor.fill(JSON.stringify({ mcpServers: {
    tiny: { command: 'python3', args: ['-c', TINY] },
    broken: { command: '/nonexistent/mcp-server' },
  } }));
  await page.getByRole('button', { name: 'Save defaults' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Saved' })).toBeVisible();
  const saved = await api(PORT, 'GET', `/api/projects/${project}/settings`);
  expect(Object.keys(saved.mcpServers.custom).sort()).toEqual(['broken', 'tiny']);

  // A session of the project: its page shows each server's state and its tools.
  const session = await newSession(PORT, project, { initialPrompt: 'hello', stopOnRunFinished: false });
  await page.goto(`/projects/${project}/sessions/${session}`);
  await hydrated(page);
  const tiny = page.locator('.mcp-server[data-mcp="tiny"]');
  await expect(tiny).toContainText('connected', { timeout: 60_000 });
  await expect(tiny).toContainText('1 tool');
  await expect(tiny).toHaveAttribute('title', 'add');
  await expect(page.locator('.mcp-server[data-mcp="broken"]')).toContainText('failed');

  // A reload shows it again (from the log, whatever the events loaded).
  await page.reload();
  await hydrated(page);
  await expect(page.locator('.mcp-server[data-mcp="tiny"]')).toContainText('connected');

  await api(PORT, 'POST', `/api/projects/${project}/agentic-sessions/${session}/stop`);
  expect(consoleErrors).toEqual([]);
});
