/**
 * A connection whose session state is not known to be clean never goes back to the pool
 * (PITFALLS 8): here, one whose ROLLBACK failed.
 */
import diagnostics from 'node:diagnostics_channel';
import test from 'ava';
import { CHANNELS, withTenantTransaction, type ClientDestroyedEvent } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';
import { observePool } from './helpers/observe.js';
import { waitFor } from './helpers/wait.js';

test('a client whose ROLLBACK fails (backend killed after the failing statement) is destroyed, not released', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax: 1 });
  t.teardown(() => db.drop());
  const a = newTenantId();
  // Clients without error events: the library learns of the dead backend only from its ROLLBACK.
  const { pool, counts, connectionErrors } = await observePool(db.appPool, { hideErrorEvents: true });
  const destroyed: ClientDestroyedEvent[] = [];
  const onDestroyed = (event: unknown) => destroyed.push(event as ClientDestroyedEvent);
  diagnostics.subscribe(CHANNELS.clientDestroyed, onDestroyed);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.clientDestroyed, onDestroyed));

  let pid = 0;
  await t.throwsAsync(
    withTenantTransaction(pool, a, async (tx) => {
      pid = (await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'doomed') RETURNING pg_backend_pid() AS pid`, [a])).rows[0].pid;
      await t.throwsAsync(tx.query('SELECT 1 / 0')); // the transaction is now failed: ROLLBACK is due
      await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor(() => connectionErrors.length > 0, { message: 'the client saw its backend go' });
      throw new Error('fn gives up');
    }),
    { message: 'fn gives up' },
  );
  t.is(counts.destroyed, 1, 'destroyed');
  t.is(counts.released, 0, 'never returned to the pool');
  t.deepEqual(destroyed.filter((e) => e.tenantId === a).map((e) => e.reason), ['rollback-failed']);
  // The pool (max 1) hands out a new backend, and nothing was committed.
  const next = await db.appPool.query('SELECT pg_backend_pid() AS pid');
  t.not(next.rows[0].pid, pid);
  t.is((await db.adminPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
});
