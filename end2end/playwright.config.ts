import { defineConfig } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { removeEarlierRuns } from './tmpdirs';

// One fresh data directory per run, shared with the test files through the environment
// (workers inherit it from the main process, which evaluates this file first).
// Created here unless the caller gives one to keep. teardown.ts removes it at the end, but
// the servers are stopped only after that and may write a last file, so what is left of
// earlier runs goes here too (runs never overlap: their ports are fixed).
if (!process.env.E2E_DATA_DIR) {
  removeEarlierRuns('ambient-e2e-');
  process.env.E2E_DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'ambient-e2e-'));
  process.env.AMBIENT_E2E_OWNED_DIR = process.env.E2E_DATA_DIR;
}

const dataDir = process.env.E2E_DATA_DIR;
const root = path.resolve(__dirname, '..');

// The workflow catalogue the servers offer: a git repository made here, once per run.
export const CATALOGUE = path.join(dataDir, 'catalogue');
if (!fs.existsSync(path.join(CATALOGUE, '.git'))) {
  const files: Record<string, string> = {
    'workflows/bugfix/.ambient/ambient.json': JSON.stringify({
      name: 'Bug fix', description: 'Reproduce, fix, test.', startupPrompt: 'Startup of the bug fix workflow.',
    }),
    'workflows/bugfix/.claude/commands/triage.md': '---\ndescription: Sort the bugs\n---\nTriage these bugs: $ARGUMENTS\n',
    'workflows/review/.ambient/ambient.json': JSON.stringify({ name: 'Review' }),
  };
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(CATALOGUE, file)), { recursive: true });
    fs.writeFileSync(path.join(CATALOGUE, file), text);
  }
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=e2e', '-c', 'user.email=e2e@example.com', ...args], { cwd: CATALOGUE });
  git('init', '--quiet', '--initial-branch=main');
  git('add', '--all');
  git('commit', '--quiet', '-m', 'catalogue');
}
const claude = path.join(root, 'tools/claude-code/node_modules/.bin/claude');

export const MOCK_PORT = 3199;
export const PORT = 3101;
export const NO_CREDENTIALS_PORT = 3102;

// The release build made by `make test`: the server, the runner beside it, the mock.
const server = (port: number, extraEnv: Record<string, string>) => ({
  command: `${root}/target/release/server`,
  cwd: root,
  url: `http://127.0.0.1:${port}/health`,
  timeout: 30_000,
  reuseExistingServer: false,
  // Asked to stop (not killed), the server stops the runners it started: the suite leaves
  // no process behind (`make leftovers` checks).
  gracefulShutdown: { signal: 'SIGTERM' as const, timeout: 20_000 },
  stdout: 'pipe' as const,
  stderr: 'pipe' as const,
  env: {
    AMBIENT_ADDR: `127.0.0.1:${port}`,
    AMBIENT_STOP_RUNNERS_ON_EXIT: 'true',
    AMBIENT_DATA_DIR: path.join(dataDir, String(port)),
    AMBIENT_CLAUDE_BIN: claude,
    AMBIENT_USER: 'e2e tester',
    // Nothing of the developer's own credentials leaks into the tests.
    ANTHROPIC_API_KEY: '',
    ANTHROPIC_BASE_URL: '',
    ANTHROPIC_AUTH_TOKEN: '',
    RUST_LOG: 'info',
    AMBIENT_WORKFLOW_CATALOGUE: `file://${CATALOGUE}`,
    ...extraEnv,
  },
});

export default defineConfig({
  testDir: './tests',
  globalTeardown: './teardown.ts',
  timeout: 90_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  webServer: [
    {
      command: `${root}/target/release/mock-anthropic --addr 127.0.0.1:${MOCK_PORT}`,
      url: `http://127.0.0.1:${MOCK_PORT}/`,
      timeout: 30_000,
      reuseExistingServer: false,
    },
    server(PORT, {
      ANTHROPIC_BASE_URL: `http://127.0.0.1:${MOCK_PORT}`,
      ANTHROPIC_API_KEY: 'sk-e2e',
    }),
    server(NO_CREDENTIALS_PORT, {}),
  ],
});
