import diagnostics from 'node:diagnostics_channel';
import test from 'ava';
import {
  CHANNELS,
  createMultitenant,
  InvalidTenantIdError,
  TenantCache,
  TenantCacheService,
  TenantConflictError,
  TenantRequiredError,
  TenantSuspendedError,
  type Resolution,
  type Tenant,
  type TenantService,
} from '../src/index.js';

const tenant = (id: string, slug = `s${id}`): Tenant =>
  Object.freeze({
    id,
    slug,
    name: slug,
    domain: null,
    status: 'active',
    databaseUrl: null,
    plan: 'default',
    metadata: {},
    createdAt: new Date(0),
    updatedAt: new Date(0),
  });

/** An in-memory TenantService (the cache's own logic is what is under test here), counting lookups. */
function memoryService(tenants: Tenant[], delayMs = 0) {
  const calls: string[] = [];
  const wait = () => new Promise((resolve) => setTimeout(resolve, delayMs));
  const service: TenantService = {
    async getTenantById(id) {
      calls.push(`id:${id}`);
      await wait();
      return tenants.find((t) => t.id === id);
    },
    async getTenantByDomain(domain) {
      calls.push(`domain:${domain}`);
      await wait();
      return tenants.find((t) => t.domain === domain);
    },
    async getTenantBySubdomain(slug) {
      calls.push(`slug:${slug}`);
      await wait();
      return tenants.find((t) => t.slug === slug);
    },
  };
  return { service, calls, tenants };
}

/** A clock the test moves: ttls pass when the test says, not when the machine gets to it. */
function clock() {
  let ms = 1_000_000;
  return { now: () => ms, advance: (by: number) => void (ms += by) };
}

test('.get() - a found tenant is served from the cache until its ttl', async (t) => {
  const { service, calls } = memoryService([tenant('1')]);
  const time = clock();
  const cached = new TenantCacheService(new TenantCache({ ttlMs: 60, now: time.now }), service);
  t.is((await cached.getTenantById('1'))?.id, '1');
  time.advance(59);
  t.is((await cached.getTenantById('1'))?.id, '1');
  t.is(calls.length, 1, 'within ttlMs: from the cache');
  time.advance(1);
  await cached.getTenantById('1');
  t.is(calls.length, 2, 'expired after ttlMs');
  t.like(cached.cache.stats(), { hits: 1, misses: 2 });
});

test('.get() - unknown tenants are cached briefly as negative entries', async (t) => {
  const { service, calls, tenants } = memoryService([]);
  const time = clock();
  const cached = new TenantCacheService(new TenantCache({ negativeTtlMs: 50, now: time.now }), service);
  t.is(await cached.getTenantBySubdomain('acme'), undefined);
  tenants.push(tenant('9', 'acme'));
  time.advance(49);
  t.is(await cached.getTenantBySubdomain('acme'), undefined, 'still the negative entry');
  t.is(calls.length, 1);
  time.advance(1);
  t.is((await cached.getTenantBySubdomain('acme'))?.id, '9', 'a tenant created meanwhile is found after the short negative ttl');
  t.is(cached.cache.stats().negativeHits, 1);
});

test('`now` and the ttls are checked options', (t) => {
  t.throws(() => new TenantCache({ now: 5 as unknown as () => number }), { instanceOf: TypeError, message: /`now`/ });
  t.throws(() => new TenantCache({ ttlMs: 0 }), { instanceOf: TypeError, message: /`ttlMs`/ });
});

test('.get() - negative entries are bounded', (t) => {
  const cache = new TenantCache({ maxNegative: 10 });
  for (let i = 0; i < 1000; i += 1) cache.set(`slug:x${i}`, null);
  t.true(cache.stats().negativeSize <= 20, `${cache.stats().negativeSize} negative entries`);
  t.true(cache.stats().evictions > 0);
});

test('concurrent misses for one key are coalesced into one lookup', async (t) => {
  const { service, calls } = memoryService([tenant('1')], 20);
  const cached = new TenantCacheService(new TenantCache(), service);
  const all = await Promise.all(Array.from({ length: 100 }, () => cached.getTenantById('1')));
  t.true(all.every((x) => x?.id === '1'));
  t.is(calls.length, 1);
});

test('a failed lookup is not cached and the next call retries', async (t) => {
  let fail = true;
  const service: TenantService = {
    async getTenantById(id) {
      if (fail) throw new Error('db down');
      return tenant(id);
    },
    getTenantByDomain: async () => undefined,
    getTenantBySubdomain: async () => undefined,
  };
  const cached = new TenantCacheService(new TenantCache(), service);
  await t.throwsAsync(cached.getTenantById('1'), { message: 'db down' });
  fail = false;
  t.is((await cached.getTenantById('1'))?.id, '1');
});

test('invalidating a tenant drops it under every key, and in-flight lookups do not re-cache it', async (t) => {
  const { service, calls, tenants } = memoryService([tenant('1', 'acme')], 20);
  const cached = new TenantCacheService(new TenantCache(), service);
  await cached.getTenantBySubdomain('acme');
  await cached.getTenantById('1');
  t.is(calls.length, 1, 'found by slug, known by id too');
  const inflight = cached.getTenantBySubdomain('other');
  cached.invalidate('1', ['slug:other']);
  tenants[0] = { ...tenants[0]!, status: 'suspended' };
  await inflight;
  t.is((await cached.getTenantBySubdomain('acme'))?.status, 'suspended');
  t.is((await cached.getTenantById('1'))?.status, 'suspended');
  await cached.getTenantBySubdomain('other');
  t.is(calls.filter((c) => c === 'slug:other').length, 2, 'the lookup in flight during invalidation was not cached');
});

test('TenantCache refuses bad options, naming them', (t) => {
  t.throws(() => new TenantCache({ maxSize: 0 }), { message: /`maxSize`/ });
  t.throws(() => new TenantCache({ ttlMs: -1 }), { message: /`ttlMs`/ });
  t.throws(() => new TenantCache({ negativeTtlMs: Number.NaN }), { message: /`negativeTtlMs`/ });
});

test('core.resolveNow() answers synchronously from a warm cache, asynchronously otherwise, with the same verdicts', async (t) => {
  const { service, calls, tenants } = memoryService([tenant('00000000-0000-4000-8000-000000000001', 'acme')]);
  tenants.push({ ...tenant('00000000-0000-4000-8000-000000000002', 'held'), status: 'suspended' });
  const core = createMultitenant({ tenantService: service, strategies: ['header', 'subdomain'], baseDomain: 'example.com' });
  const request = (id: string | undefined, host = 'api.internal') => ({
    header: (name: string) => (name.toLowerCase() === 'x-tenant-id' ? id : undefined),
    host,
    path: '/',
  });
  const cold = core.resolveNow(request('00000000-0000-4000-8000-000000000001'));
  t.true(cold instanceof Promise, 'a cache miss is a lookup');
  t.is((await cold)?.tenant.slug, 'acme');
  const warm = core.resolveNow(request('{00000000-0000-4000-8000-000000000001}'));
  t.false(warm instanceof Promise, 'a cache hit is answered in the same tick');
  t.is((warm as Resolution).tenant.slug, 'acme');
  t.is(calls.length, 1);
  // Errors keep their kinds on both paths: synchronous throws when the cache knows, rejections when it must look.
  t.throws(() => core.resolveNow(request('not-a-uuid')), { instanceOf: InvalidTenantIdError });
  t.throws(() => core.resolveNow(request(undefined)), { instanceOf: TenantRequiredError });
  t.is(core.resolveNow(request(undefined), { optional: true }), undefined);
  await t.throwsAsync(Promise.resolve(core.resolveNow(request('00000000-0000-4000-8000-000000000002'))), { instanceOf: TenantSuspendedError });
  t.throws(() => core.resolveNow(request('00000000-0000-4000-8000-000000000002')), { instanceOf: TenantSuspendedError }, 'now cached');
  // Header and subdomain disagree: the slug lookup is a miss (a promise), then a conflict.
  await t.throwsAsync(Promise.resolve(core.resolveNow(request('00000000-0000-4000-8000-000000000001', 'held.example.com'))), {
    instanceOf: TenantConflictError,
  });
  t.throws(() => core.resolveNow(request('00000000-0000-4000-8000-000000000001', 'held.example.com')), { instanceOf: TenantConflictError });
  // resolve() is the same, always as a promise.
  t.is((await core.resolve(request('00000000-0000-4000-8000-000000000001', 'acme.example.com')))?.tenant.slug, 'acme');
  await t.throwsAsync(core.resolve(request('nope')), { instanceOf: InvalidTenantIdError });
});

// Serial: the channel is process-wide, and other tests here resolve too.
test.serial('core.resolveNow() publishes one resolution event per call, with the same outcome on the synchronous and the asynchronous path', async (t) => {
  const { service } = memoryService([tenant('00000000-0000-4000-8000-000000000003', 'gone')]);
  const core = createMultitenant({
    tenantService: service,
    // An asynchronous custom strategy first, then the (synchronous) header: order is kept.
    strategies: [{ custom: async (request) => request.header('x-custom'), name: 'custom' }, 'header'],
  });
  const events: Array<{ outcome: string; strategy?: string }> = [];
  const listener = (message: unknown) => events.push(message as { outcome: string; strategy?: string });
  diagnostics.subscribe(CHANNELS.resolution, listener);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.resolution, listener));
  const request = (headers: Record<string, string>) => ({ header: (name: string) => headers[name.toLowerCase()], host: '', path: '/' });
  const id = '00000000-0000-4000-8000-000000000003';
  const settle = async (value: unknown) => {
    try {
      await value;
    } catch {
      // outcome checked through the events
    }
  };
  const run = async (headers: Record<string, string>, optional = false) => {
    try {
      await settle(core.resolveNow(request(headers), { optional }));
    } catch {
      // a synchronous throw
    }
  };
  await run({ 'x-tenant-id': id }); // cold: async
  await run({ 'x-tenant-id': id }); // warm, yet asynchronous: the custom strategy is async
  await run({ 'x-custom': id, 'x-tenant-id': id });
  await run({ 'x-tenant-id': '00000000-0000-4000-8000-00000000000f' });
  await run({ 'x-tenant-id': 'nope' });
  await run({});
  await run({}, true);
  t.deepEqual(
    events.map((e) => [e.outcome, e.strategy]),
    [
      ['resolved', 'header'],
      ['resolved', 'header'],
      ['resolved', 'custom'],
      ['unknown', 'header'],
      ['invalid', undefined],
      ['missing', undefined],
      ['missing', undefined],
    ],
  );
});
