import { defineConfig } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeEarlierRuns } from './tmpdirs';

// `make bench-ui`: the session page's load, measured in Chromium against a release build.
// Own ports and data directory, so it never meets the test run's servers.
// Removed by teardown.ts after the run. Workers evaluate this file again: they reuse the
// main process's directory (inherited through the environment) instead of making another.
if (!process.env.AMBIENT_E2E_OWNED_DIR) {
  removeEarlierRuns('ambient-bench-');
  process.env.AMBIENT_E2E_OWNED_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'ambient-bench-'));
}
const dataDir = process.env.AMBIENT_E2E_OWNED_DIR;
const root = path.resolve(__dirname, '..');
export const BENCH_MOCK_PORT = 3299;
export const BENCH_PORT = 3201;

export default defineConfig({
  testDir: './bench',
  testMatch: /.*\.bench\.ts/,
  globalTeardown: './teardown.ts',
  timeout: 600_000,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${BENCH_PORT}`,
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    },
  },
  webServer: [
    {
      command: `${root}/target/release/mock-anthropic --addr 127.0.0.1:${BENCH_MOCK_PORT}`,
      url: `http://127.0.0.1:${BENCH_MOCK_PORT}/`,
      reuseExistingServer: false,
    },
    {
      command: `${root}/target/release/server`,
      cwd: root,
      url: `http://127.0.0.1:${BENCH_PORT}/health`,
      reuseExistingServer: false,
      gracefulShutdown: { signal: 'SIGTERM', timeout: 20_000 },
      env: {
        AMBIENT_ADDR: `127.0.0.1:${BENCH_PORT}`,
        AMBIENT_STOP_RUNNERS_ON_EXIT: 'true',
        AMBIENT_DATA_DIR: dataDir,
        AMBIENT_CLAUDE_BIN: path.join(root, 'tools/claude-code/node_modules/.bin/claude'),
        ANTHROPIC_BASE_URL: `http://127.0.0.1:${BENCH_MOCK_PORT}`,
        ANTHROPIC_API_KEY: 'sk-bench',
        ANTHROPIC_AUTH_TOKEN: '',
        RUST_LOG: 'warn',
        AMBIENT_WORKFLOW_CATALOGUE: '',
      },
    },
  ],
});
