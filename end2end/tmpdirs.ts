import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Removes the data directories (`<prefix>*` in the temporary directory) that earlier runs
 * left: teardown.ts removes a run's own at its end, but Playwright stops the servers only
 * after that, and they may still write. Runs never overlap (their ports are fixed).
 */
export function removeEarlierRuns(prefix: string) {
  for (const name of fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(prefix))) {
    fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}
