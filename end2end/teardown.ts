import * as fs from 'node:fs';

/**
 * Removes the run's data directory (databases, session workspaces) once the run is over.
 * Only a directory the config created itself (`AMBIENT_E2E_OWNED_DIR`); one the caller gave
 * in `E2E_DATA_DIR` is kept. A runner that is still ending may write into its workspace
 * meanwhile (a folder not empty when removed): the removal is tried again, as Node does for
 * `ENOTEMPTY` with `maxRetries`.
 */
export default async function teardown() {
  const dir = process.env.AMBIENT_E2E_OWNED_DIR;
  if (dir) fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
}
