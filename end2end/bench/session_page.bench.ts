// The session page's cost to a browser: bytes transferred (as the server sends them, gzip)
// and time from navigation to the first transcript entry on screen, and to interactive, on a
// session of about 1,000 events. Figures go to BENCHMARKS.md.
import { test, expect, chromium } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BENCH_MOCK_PORT, BENCH_PORT } from '../bench.config';

const RUNS = 15;
const TOOL_CALLS = 250;

/** The bench server's install secret (its owner's access key): every request signs in. */
const key = () => fs.readFileSync(path.join(process.env.AMBIENT_E2E_OWNED_DIR!, 'install-secret'), 'utf8').trim();
const auth = () => ({ authorization: `Bearer ${key()}` });

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

test('session page with ~1,000 events: bytes and time to first entry', async () => {
  // A long session: many small tool calls (text, call, result each), then a summary.
  const replies = [];
  for (let i = 1; i <= TOOL_CALLS; i++) {
    replies.push({ type: 'tool_use', name: 'Bash', input: { command: `echo step ${i}` }, text: `Step ${i}: checking.` });
  }
  replies.push({ type: 'text', text: '## Done\n\nAll steps ran. `ok`\n\n```rust\nfn main() {}\n```' });
  await post(`http://127.0.0.1:${BENCH_MOCK_PORT}/_mock/replies`, replies);
  const base = `http://127.0.0.1:${BENCH_PORT}`;
  const { name } = await post(`${base}/api/projects/default/agentic-sessions`, { initialPrompt: 'run the steps', stopOnRunFinished: true }, auth());
  const url = `${base}/projects/default/sessions/${name}`;
  await expect
    .poll(async () => (await (await fetch(`${base}/api/projects/default/agentic-sessions/${name}`, { headers: auth() })).json()).status?.phase, {
      timeout: 540_000,
      intervals: [1000],
    })
    .toBe('Completed');
  const exported = await (await fetch(`${base}/api/projects/default/agentic-sessions/${name}/export`, { headers: auth() })).json();
  const events = exported.events.length;

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const firstEntry: number[] = [];
  const interactive: number[] = [];
  const htmlDone: number[] = [];
  const fcp: number[] = [];
  let bytes: Record<string, number> = {};
  for (let run = 0; run < RUNS; run++) {
    // A cold cache each time: a new context.
    const context = await browser.newContext();
    // Signed in as the login page does it (the cookie, not counted in the page's bytes).
    const login = await context.request.post(`${base}/login`, { form: { key: key() }, maxRedirects: 0 });
    expect(login.status()).toBe(303);
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const sizes: Record<string, number> = {};
    const urls: Record<string, string> = {};
    cdp.on('Network.responseReceived', (e: any) => (urls[e.requestId] = e.response.url));
    cdp.on('Network.loadingFinished', (e: any) => (sizes[urls[e.requestId] ?? e.requestId] = e.encodedDataLength));
    // Checked on every frame inside the page: when the first entry has a box on screen.
    await page.addInitScript(() => {
      const check = () => {
        const e = document.querySelector('.transcript [data-seq]');
        if (e && e.getBoundingClientRect().height > 0) (window as any).__firstEntry = performance.now();
        else requestAnimationFrame(check);
      };
      requestAnimationFrame(check);
    });
    await page.goto(url, { waitUntil: 'commit' });
    await page.locator('.transcript [data-seq]').first().waitFor({ state: 'visible' });
    await page.waitForFunction(() => (window as any).__firstEntry !== undefined);
    firstEntry.push(await page.evaluate(() => (window as any).__firstEntry));
    await page.locator('#app-state[data-hydrated="true"]').waitFor({ state: 'attached' });
    interactive.push(await page.evaluate(() => performance.now()));
    await page.waitForLoadState('networkidle');
    const t = await page.evaluate(() => ({
      html: (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).responseEnd,
      fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN,
    }));
    htmlDone.push(t.html);
    fcp.push(t.fcp);
    if (run === 0) {
      bytes = {};
      for (const [u, n] of Object.entries(sizes)) {
        const kind = u.endsWith('.wasm') ? 'wasm' : u.endsWith('.js') ? 'js' : u.endsWith('.css') ? 'css' : u === url ? 'html' : 'other';
        bytes[kind] = (bytes[kind] ?? 0) + n;
      }
    }
    await context.close();
  }
  await browser.close();
  const assets = (bytes.js ?? 0) + (bytes.wasm ?? 0) + (bytes.css ?? 0);
  console.log(`session: ${events} events`);
  console.log(`transferred (gzip, incl. headers): html ${bytes.html} B, js ${bytes.js} B, wasm ${bytes.wasm} B, css ${bytes.css} B, other ${bytes.other ?? 0} B`);
  console.log(`JS + WASM + CSS: ${assets} B (${(assets / 1024).toFixed(1)} KiB)`);
  console.log(`navigation -> first transcript entry visible: p50 ${pct(firstEntry, 50).toFixed(0)} ms, p90 ${pct(firstEntry, 90).toFixed(0)} ms (${RUNS} cold loads)`);
  console.log(`navigation -> HTML received: p50 ${pct(htmlDone, 50).toFixed(0)} ms; first contentful paint: p50 ${pct(fcp, 50).toFixed(0)} ms`);
  console.log(`navigation -> hydrated (interactive): p50 ${pct(interactive, 50).toFixed(0)} ms, p90 ${pct(interactive, 90).toFixed(0)} ms`);
  expect(events).toBeGreaterThan(900);
});
