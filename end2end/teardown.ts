import * as fs from 'node:fs';

/**
 * Removes the run's data directory (databases, session workspaces) once the run is over.
 * Only a directory the config created itself (`AMBIENT_E2E_OWNED_DIR`); one the caller gave
 * in `E2E_DATA_DIR` is kept.
 */
export default async function teardown() {
  const dir = process.env.AMBIENT_E2E_OWNED_DIR;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}
