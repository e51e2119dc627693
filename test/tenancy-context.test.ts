/**
 * The tenancy travels with the tenant: the Koa middleware stores the canonical id together with its
 * core's tenancy in TenantContext, so data code that passes `undefined` (and no options) works for
 * text, bigint and uuid ids and for a custom setting name — through the free functions and through
 * a handle (createTenantDb). Each under RLS as the app role, with two tenants' rows present.
 */
import test from 'ava';
import Koa from 'koa';
import request from 'supertest';
import {
  createMultitenant,
  createTenantDb,
  PgTenantService,
  TenantAdminService,
  TenantContext,
  tenantQuery,
  withTenantTransaction,
  type TenantIdType,
} from '../src/index.js';
import { createTenantRouter, multitenant, problemDetails } from '../src/koa/index.js';
import { createTestDatabase } from './helpers/db.js';

const COLUMN: Record<TenantIdType, string> = { uuid: 'uuid', text: 'text', bigint: 'bigint' };
const IDS: Record<TenantIdType, [string | undefined, string | undefined]> = {
  uuid: [undefined, undefined],
  text: ['acme-corp', 'globex'],
  bigint: ['9007199254740993', '42'], // beyond 2^53: kept exact as text
};

for (const type of ['text', 'bigint', 'uuid'] as const) {
  test(`${type} tenant ids through multitenant(): data code passing undefined sees exactly the request's tenant`, async (t) => {
    const db = await createTestDatabase({
      schema: `CREATE TABLE notes (tenant_id ${COLUMN[type]} NOT NULL, body text NOT NULL)`,
      tenancy: { tables: ['notes'], tenantIdType: type, setting: 'app.org_id' },
    });
    t.teardown(() => db.drop());
    const tenancy = db.config;
    const admin = new TenantAdminService(db.adminPool, { tenancy });
    const [idA, idB] = IDS[type];
    const a = await admin.createTenant({ slug: 'a', name: 'A', ...(idA ? { id: idA } : {}) });
    const b = await admin.createTenant({ slug: 'b', name: 'B', ...(idB ? { id: idB } : {}) });
    await db.superQuery('INSERT INTO notes (tenant_id, body) VALUES ($1, $2), ($3, $4)', [a.id, 'note of A', b.id, 'note of B']);
    const handle = createTenantDb(db.appPool, { tenancy });

    const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy }), tenancy, cache: false });
    const app = new Koa();
    app.use(problemDetails());
    app.use(multitenant({ core }));
    const router = createTenantRouter();
    router.get('/notes', async (ctx) => {
      const free = await tenantQuery<{ body: string }>(db.appPool, undefined, 'SELECT body FROM notes');
      const inTx = await withTenantTransaction(db.appPool, undefined, async (tx) => (await tx.query<{ body: string; setting: string }>(
        `SELECT body, current_setting('app.org_id') AS setting FROM notes`,
      )).rows);
      const viaHandle = await handle.tenantQuery<{ body: string }>(undefined, 'SELECT body FROM notes');
      ctx.body = { free: free.rows.map((r) => r.body), inTx, viaHandle: viaHandle.rows.map((r) => r.body), context: TenantContext.getTenantId() };
    });
    app.use(router.routes());

    for (const [tenant, body] of [[a, 'note of A'], [b, 'note of B']] as const) {
      const response = await request(app.callback()).get('/notes').set('X-Tenant-ID', tenant.id);
      t.is(response.status, 200, JSON.stringify(response.body));
      t.deepEqual(response.body.free, [body]);
      t.deepEqual(response.body.inTx, [{ body, setting: tenant.id }]);
      t.deepEqual(response.body.viaHandle, [body]);
      t.is(response.body.context, tenant.id);
    }
  });
}

test('a handle validates its options once, at creation', (t) => {
  const pool = { connect: async () => { throw new Error('not used'); } };
  t.throws(() => createTenantDb(pool, { prepare: 'sometimes' as never }), { message: /prepare/ });
  t.throws(() => createTenantDb(pool, { statementTimeoutMs: -1 }), { message: /statementTimeoutMs/ });
  t.throws(() => createTenantDb({} as never), { instanceOf: TypeError });
});
