import test from 'ava';
import { EventEmitter, once } from 'node:events';
import { runWithTenantContext, TenantContext, TenantRequiredError, tenantQuery, withTenantTransaction } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

test('TenantContext holds the tenant across awaits, timers and emitters, and nowhere else', async (t) => {
  t.is(TenantContext.getTenantId(), undefined);
  t.throws(() => TenantContext.requireTenantId(), { instanceOf: TenantRequiredError });
  const emitter = new EventEmitter();
  const seen = await runWithTenantContext('t-1', async () => {
    await new Promise((resolve) => setTimeout(resolve, 5)); // a timer hop (what is under test), not a wait
    const fromTimer = await new Promise((resolve) => setImmediate(() => resolve(TenantContext.getTenantId())));
    const fromEmitter = new Promise((resolve) => emitter.once('go', () => resolve(TenantContext.getTenantId())));
    emitter.emit('go');
    return [TenantContext.requireTenantId(), fromTimer, await fromEmitter];
  });
  t.deepEqual(seen, ['t-1', 't-1', 't-1']);
  t.is(TenantContext.getTenantId(), undefined);
});

test('TenantContext.exit runs work without the tenant', (t) => {
  TenantContext.run('t-2', () => {
    t.is(TenantContext.exit(() => TenantContext.getTenantId()), undefined);
    t.is(TenantContext.getTenantId(), 't-2');
  });
  t.throws(() => TenantContext.run('', () => 1), { instanceOf: TenantRequiredError });
});

test('interleaved tenant contexts on a pool of one connection never cross', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax: 1 });
  t.teardown(() => db.drop());
  const tenants = Array.from({ length: 20 }, newTenantId);
  const emitter = new EventEmitter();
  emitter.setMaxListeners(100);
  let inserted = 0;
  const work = Promise.all(
    tenants.map((tenant) =>
      runWithTenantContext(tenant, async () => {
        // A callback registered in one context and fired from another keeps its own tenant.
        const fired = once(emitter, 'tick');
        await withTenantTransaction(db.appPool, undefined, (tx) => tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, tenant]));
        inserted += 1;
        await fired;
        const { rows } = await tenantQuery(db.appPool, undefined, `SELECT item, current_setting('app.tenant_id') AS setting FROM orders`);
        t.deepEqual(rows, [{ item: tenant, setting: tenant }]);
      }),
    ),
  );
  // fired from the test's own (tenant-less) context, after everyone registered
  await waitFor(() => inserted === tenants.length, { message: 'every tenant inserted and registered its listener' });
  emitter.emit('tick');
  await work;
});
