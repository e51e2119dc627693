import anyTest, { type TestFn } from 'ava';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import request from 'supertest';
import { createPortabilityRouter } from '../src/koa/index.js';
import { TenantMoveJobs } from '../src/portability/index.js';
import { portabilityFixture, seedTenant, serverDigest, targetCounts, type PortabilityFixture } from './helpers/portability.js';

interface Context extends PortabilityFixture {
  app: Koa;
  jobs: TenantMoveJobs;
}
const test = anyTest as TestFn<Context>;
const AUTH = { authorization: 'Bearer ok' };

test.before(async (t) => {
  const f = await portabilityFixture();
  const targetPool = f.target.pool(f.target.ownerUrl, { max: 2 });
  const jobs = new TenantMoveJobs({ portability: f.portability, adminPool: f.source.adminPool, targets: { eu: { databaseUrl: f.target.appUrl, targetPool } }, settleMs: 0 });
  const app = new Koa();
  const router = createPortabilityRouter(f.portability, {
    authorize: async (ctx, next) => {
      if (ctx.get('authorization') !== AUTH.authorization) ctx.throw(401);
      await next();
    },
    importTargets: { eu: targetPool },
    maxImportBytes: 1_000_000,
    jobs,
  });
  app.use(router.routes()).use(router.allowedMethods());
  t.context = { ...f, app, jobs };
});
test.after.always((t) => t.context.close?.());

const http = (t: { context: Context }) => request(t.context.app.callback());

test.serial('GET export streams NDJSON; an unknown tenant is a 404 problem; no token, 401', async (t) => {
  const tenant = await seedTenant(t.context, 4);
  t.is((await http(t).get(`/admin/tenants/${tenant.id}/export`)).status, 401);
  const response = await http(t).get(`/admin/tenants/${tenant.id}/export`).set(AUTH).buffer(true).parse((res, done) => {
    let text = '';
    res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    res.on('end', () => done(null, text));
  });
  t.is(response.status, 200);
  t.regex(String(response.headers['content-type']), /^application\/x-ndjson/);
  const lines = (response.body as string).trim().split('\n');
  t.like(JSON.parse(lines[0]!), { format: 'linkbay-tenant-export', version: 1, tenant: tenant.id });
  t.like(JSON.parse(lines.at(-1)!), { end: true });
  const unknown = await http(t).get(`/admin/tenants/${crypto.randomUUID()}/export`).set(AUTH);
  t.is(unknown.status, 404);
  t.like(unknown.body, { code: 'LBMT_TENANT_NOT_FOUND' });
});

async function exportText(t: { context: Context }, tenantId: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of await t.context.portability.exportTenant(tenantId)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

test.serial('POST import: dry run, then the import; a tampered file is a 422 with nothing written', async (t) => {
  const tenant = await seedTenant(t.context, 6);
  const text = await exportText(t, tenant.id);
  const post = (query: string, body: string, type = 'application/x-ndjson') =>
    http(t).post(`/admin/tenants/${tenant.id}/import${query}`).set(AUTH).set('content-type', type).send(body);
  t.is((await post('?into=elsewhere', text)).status, 422);
  t.is((await post('?into=eu', text, 'application/json')).status, 415);
  const tampered = text.replace(/note \d+/, 'edited');
  const refused = await post('?into=eu', tampered);
  t.is(refused.status, 422);
  t.like(refused.body, { code: 'LBMT_EXPORT_INVALID' });
  t.deepEqual(await targetCounts(t.context.target), [0, 0]);
  const dry = await post('?into=eu&dryRun=true', text);
  t.is(dry.status, 200);
  t.like(dry.body, { dryRun: true, counts: { 'public.accounts': 6, 'public.memberships': 12 } });
  t.deepEqual(await targetCounts(t.context.target), [0, 0]);
  const done = await post('?into=eu', text);
  t.is(done.status, 200);
  t.deepEqual(await serverDigest(t.context.target, tenant.id), await serverDigest(t.context.source, tenant.id));
  await t.context.target.superQuery('DELETE FROM memberships; DELETE FROM accounts;');
});

test.serial('an import body over the limit is a 413, declared or streamed, with nothing written', async (t) => {
  const tenant = await seedTenant(t.context, 30); // large texts: well over 1 MB
  const text = await exportText(t, tenant.id);
  t.true(Buffer.byteLength(text) > 1_000_000);
  const declared = await http(t).post(`/admin/tenants/${tenant.id}/import?into=eu`).set(AUTH).set('content-type', 'application/x-ndjson').send(text);
  t.is(declared.status, 413);
  // Chunked, no Content-Length: refused once the bytes read pass the limit.
  const server = t.context.app.listen(0);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ port, method: 'POST', path: `/admin/tenants/${tenant.id}/import?into=eu`, headers: { ...AUTH, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    const bytes = Buffer.from(text);
    let at = 0;
    const pump = () => {
      while (at < bytes.length) {
        const more = req.write(bytes.subarray(at, (at += 16_384)));
        if (!more) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  t.is(status, 413);
  t.deepEqual(await targetCounts(t.context.target), [0, 0]);
});

test.serial('POST move answers 202 with the job; GET /jobs/:id reports it to the end', async (t) => {
  const tenant = await seedTenant(t.context, 5);
  const original = await serverDigest(t.context.source, tenant.id);
  const accepted = await http(t).post(`/admin/tenants/${tenant.id}/move`).set(AUTH).send({ target: 'eu' });
  t.is(accepted.status, 202);
  t.like(accepted.body, { tenantId: tenant.id, target: 'eu', state: 'running' });
  t.is(accepted.headers.location, `/admin/jobs/${accepted.body.id}`);
  t.is((await http(t).post(`/admin/tenants/${tenant.id}/move`).set(AUTH).send({ target: 'nowhere' })).status, 422);
  let job = accepted.body;
  const deadline = Date.now() + 20_000;
  while (job.state === 'running' && Date.now() < deadline) job = (await http(t).get(String(accepted.headers.location)).set(AUTH)).body;
  t.like(job, { state: 'succeeded', step: 'cleaned' });
  t.deepEqual(await serverDigest(t.context.target, tenant.id), original);
  t.is((await http(t).get(`/admin/jobs/${crypto.randomUUID()}`).set(AUTH)).status, 404);
  t.is((await http(t).get(`/admin/jobs/not-a-job`).set(AUTH)).status, 404);
});
