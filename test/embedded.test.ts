/**
 * The embedded PostgreSQL of `npm test` / `npm start` (test/helpers/embedded.ts) says what is in
 * the way when it cannot start, instead of failing with `undefined`.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startEmbeddedPostgres } from './helpers/embedded.js';

test('a data directory in use by another instance, and a taken port, are named in the error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-embedded-test-'));
  await chmod(dir, 0o755); // as root the server runs as `postgres`, which must enter it (else the data goes elsewhere)
  const first = await startEmbeddedPostgres({ dataDir: join(dir, 'pg') });
  t.teardown(async () => {
    await first.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await t.throwsAsync(startEmbeddedPostgres({ dataDir: join(dir, 'pg') }), { message: /data directory .* is in use by another PostgreSQL/ });

  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const port = (holder.address() as { port: number }).port;
  await t.throwsAsync(startEmbeddedPostgres({ port }), { message: new RegExp(`port ${port} is taken`) });

  // The first one is untouched by both attempts.
  t.true(first.url.startsWith('postgres://'));
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: first.url });
  await client.connect();
  t.is((await client.query('SELECT 1 AS one')).rows[0].one, 1);
  await client.end();
});
