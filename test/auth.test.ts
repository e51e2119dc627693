/**
 * linkbay-multitenant/auth through the real Koa middleware and PostgreSQL: the tenant from a
 * verified JWT claim (forged, expired, wrong-audience and wrong-issuer tokens are 401 and never fall
 * through), and from hashed API keys looked up by the SECURITY DEFINER function as the app role
 * (unknown and revoked keys are 401).
 */
import diagnostics from 'node:diagnostics_channel';
import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import request from 'supertest';
import { generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { CHANNELS, checkPosture, createMultitenant, createTenantDb, generateRlsSql, migrateFiles, PgTenantService } from '../src/index.js';
import { apiKeyDigest, apiKeysSql, apiKeyTenant, createApiKey, jwtTenant, revokeApiKey } from '../src/auth/index.js';
import { multitenant, problemDetails } from '../src/koa/index.js';
import type { ResolutionEvent } from '../src/events.js';
import type { StrategySpec } from '../src/resolution.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

interface Ctx {
  db: TestDatabase;
  acme: string;
  globex: string;
  suspended: string;
  keys: { privateKey: CryptoKey; publicKey: CryptoKey };
  otherKeys: { privateKey: CryptoKey; publicKey: CryptoKey };
}
const test = anyTest as TestFn<Ctx>;
const ISSUER = 'https://auth.example.test/';
const AUDIENCE = 'orders-api';

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  // Appended to the library's migrations, applied as they were (by the migrating superuser).
  await migrateFiles({ databaseUrl: db.superUrl, files: [...generateRlsSql(db.config), apiKeysSql(db.config)] });
  const add = async (slug: string, status = 'active') =>
    (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status) VALUES ($1, $1, $2) RETURNING id`, [slug, status])).rows[0].id as string;
  const [acme, globex, suspended] = [await add('acme'), await add('globex'), await add('initech', 'suspended')];
  const handle = createTenantDb(db.appPool, { tenancy: db.config });
  await handle.tenantQuery(acme, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'acme-order')`, [acme]);
  await handle.tenantQuery(globex, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'globex-order')`, [globex]);
  t.context = { db, acme, globex, suspended, keys: await generateKeyPair('ES256'), otherKeys: await generateKeyPair('ES256') };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

/** A real app: resolution by the given strategies, then a query under RLS without WHERE. */
function app(t: { context: Ctx }, strategies: StrategySpec[]) {
  const { db } = t.context;
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config, strategies, cache: false });
  const handle = createTenantDb(db.appPool, { tenancy: db.config });
  const koa = new Koa();
  koa.use(problemDetails());
  koa.use(multitenant({ core }));
  koa.use(async (ctx) => {
    const { rows } = await handle.tenantQuery(undefined, 'SELECT item FROM orders');
    ctx.body = { tenant: ctx.state.tenant.id, items: rows.map((r) => r.item) };
  });
  return koa.callback();
}

const jwtStrategy = (t: { context: Ctx }) => jwtTenant({ key: t.context.keys.publicKey, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'] });

function token(key: CryptoKey, claims: Record<string, unknown>, edit: (jwt: SignJWT) => SignJWT = (jwt) => jwt) {
  return edit(new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('5m')).sign(key);
}

test('a verified token names the tenant; its queries see only that tenant', async (t) => {
  const server = app(t, [jwtStrategy(t)]);
  const jwt = await token(t.context.keys.privateKey, { tenant_id: t.context.acme.toUpperCase() });
  const response = await request(server).get('/').set('Authorization', `Bearer ${jwt}`).expect(200);
  t.deepEqual(response.body, { tenant: t.context.acme, items: ['acme-order'] });
});

test('forged, expired, wrong-audience, wrong-issuer, unsigned and tenant-less tokens are 401 and never fall through', async (t) => {
  // The header strategy comes second and names a real tenant: an unverifiable token must not reach it.
  const server = app(t, [jwtStrategy(t), 'header']);
  const { keys, otherKeys, acme, globex } = t.context;
  const claims = { tenant_id: acme };
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ ...claims, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url')}.`;
  const cases: Record<string, string> = {
    forged: await token(otherKeys.privateKey, claims),
    expired: await token(keys.privateKey, claims, (jwt) => jwt.setIssuedAt(Math.floor(Date.now() / 1000) - 600).setExpirationTime(Math.floor(Date.now() / 1000) - 60)),
    'wrong audience': await token(keys.privateKey, claims, (jwt) => jwt.setAudience('billing-api')),
    'wrong issuer': await token(keys.privateKey, claims, (jwt) => jwt.setIssuer('https://evil.example.test/')),
    'no expiry': await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(keys.privateKey),
    unsigned,
    'no tenant claim': await token(keys.privateKey, { sub: 'user-1' }),
    'not a JWT': 'definitely-not-a-jwt',
    'tampered payload': (await token(keys.privateKey, claims)).replace(/\.([^.]+)\./, (_, payload: string) => `.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), tenant_id: globex })).toString('base64url')}.`),
  };
  for (const [what, jwt] of Object.entries(cases)) {
    const response = await request(server).get('/').set('Authorization', `Bearer ${jwt}`).set('X-Tenant-ID', globex);
    t.is(response.status, 401, what);
    t.is(response.body.code, 'LBMT_UNAUTHENTICATED', what);
    t.is(response.type, 'application/problem+json', what);
    t.is(response.headers['www-authenticate'], 'Bearer error="invalid_token"', what);
    t.false(JSON.stringify(response.body).includes(globex) || JSON.stringify(response.body).includes(acme), `${what}: no tenant echoed`);
  }
  // No Authorization header at all: the JWT strategy names no tenant, and the next one may.
  const fallback = await request(server).get('/').set('X-Tenant-ID', globex).expect(200);
  t.deepEqual(fallback.body.items, ['globex-order']);
});

test('a valid token and a header naming another tenant conflict; the header cannot override the token', async (t) => {
  const server = app(t, [jwtStrategy(t), 'header']);
  const jwt = await token(t.context.keys.privateKey, { tenant_id: t.context.acme });
  const response = await request(server).get('/').set('Authorization', `Bearer ${jwt}`).set('X-Tenant-ID', t.context.globex);
  t.is(response.status, 400);
  t.is(response.body.code, 'LBMT_TENANT_CONFLICT');
});

test('a token naming an unknown or suspended tenant is 404 / 403, like any other strategy', async (t) => {
  const server = app(t, [jwtStrategy(t)]);
  const unknown = await token(t.context.keys.privateKey, { tenant_id: newTenantId() });
  t.is((await request(server).get('/').set('Authorization', `Bearer ${unknown}`)).status, 404);
  const suspended = await token(t.context.keys.privateKey, { tenant_id: t.context.suspended });
  t.is((await request(server).get('/').set('Authorization', `Bearer ${suspended}`)).status, 403);
});

test('jwtTenant refuses a configuration without issuer or audience', (t) => {
  t.throws(() => jwtTenant({ key: t.context.keys.publicKey, issuer: ISSUER, audience: [] }), { instanceOf: TypeError, message: /audience/ });
  t.throws(() => jwtTenant({ key: t.context.keys.publicKey, issuer: '', audience: AUDIENCE }), { instanceOf: TypeError, message: /issuer/ });
});

test('an API key names its tenant through the SECURITY DEFINER function, as the app role', async (t) => {
  const { db, globex } = t.context;
  const server = app(t, [apiKeyTenant({ pool: db.appPool })]);
  const { key } = await createApiKey(db.adminPool, globex, { label: 'ci' });
  t.regex(key, /^lbk_[A-Za-z0-9_-]{43}$/);
  const response = await request(server).get('/').set('X-API-Key', key).expect(200);
  t.deepEqual(response.body, { tenant: globex, items: ['globex-order'] });
});

test('unknown, malformed and revoked API keys are 401 and never fall through', async (t) => {
  const { db, acme, globex } = t.context;
  const server = app(t, [apiKeyTenant({ pool: db.appPool }), 'header']);
  const { id, key } = await createApiKey(db.adminPool, acme);
  await request(server).get('/').set('X-API-Key', key).expect(200);
  t.true(await revokeApiKey(db.adminPool, id));
  t.false(await revokeApiKey(db.adminPool, id), 'revoking twice revokes nothing');
  const unknown = `lbk_${Buffer.alloc(32, 7).toString('base64url')}`;
  for (const [what, value] of [['revoked', key], ['unknown', unknown], ['malformed', 'lbk_short'], ['empty', '']] as const) {
    const response = await request(server).get('/').set('X-API-Key', value).set('X-Tenant-ID', globex);
    t.is(response.status, 401, what);
    t.is(response.body.code, 'LBMT_UNAUTHENTICATED', what);
    t.is(response.headers['www-authenticate'], 'ApiKey header="X-API-Key"', what);
  }
});

test('a refused credential is published as an unauthenticated resolution, not a server error', async (t) => {
  const events: ResolutionEvent[] = [];
  const listener = (event: unknown) => events.push(event as ResolutionEvent);
  diagnostics.subscribe(CHANNELS.resolution, listener);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.resolution, listener));
  const server = app(t, [apiKeyTenant({ pool: t.context.db.appPool })]);
  await request(server).get('/').set('X-API-Key', 'lbk_short').expect(401);
  t.true(events.some((e) => e.outcome === 'unauthenticated'));
  t.false(events.some((e) => e.outcome === 'error'));
});

test('the app role cannot read the keys table; only digests are stored; the doctor has nothing to say about the function', async (t) => {
  const { db, acme } = t.context;
  const { id, key } = await createApiKey(db.adminPool, acme);
  const read = await t.throwsAsync<Error & { code?: string }>(db.appPool.query('SELECT * FROM linkbay.api_keys'));
  t.is(read?.code, '42501');
  const stored = await db.adminPool.query('SELECT row_to_json(k)::text AS row, key_sha256 FROM linkbay.api_keys k WHERE id = $1', [id]);
  t.false(stored.rows[0].row.includes(key.slice(4)), 'the key itself is nowhere in the row');
  t.deepEqual(stored.rows[0].key_sha256, apiKeyDigest(key));
  // The function returns the tenant id and nothing else, to the app role only.
  const direct = await db.appPool.query('SELECT linkbay.tenant_for_api_key($1)::text AS tenant', [apiKeyDigest(key)]);
  t.is(direct.rows[0].tenant, acme);
  const grants = await db.superQuery(`SELECT has_function_privilege('public', 'linkbay.tenant_for_api_key(bytea)', 'EXECUTE') AS public_can`);
  t.false(grants.rows[0].public_can);
  // Keys go with their tenant.
  const doomed = (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('doomed', 'Doomed') RETURNING id`)).rows[0].id as string;
  const doomedKey = await createApiKey(db.adminPool, doomed);
  await db.superQuery('DELETE FROM linkbay.tenants WHERE id = $1', [doomed]);
  t.is((await db.adminPool.query('SELECT count(*)::int AS n FROM linkbay.api_keys WHERE id = $1', [doomedKey.id])).rows[0].n, 0);
  const report = await checkPosture(db.adminPool, db.config);
  t.deepEqual(report.findings.filter((f) => f.object.includes('tenant_for_api_key') || f.object.includes('api_keys')), []);
});
