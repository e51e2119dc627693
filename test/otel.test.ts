/**
 * linkbay-multitenant/otel with the OpenTelemetry SDK's in-memory exporter: spans for tenant
 * transactions, queries and resolutions, with the tenant id, children of the caller's active span.
 * And tenantLogMixin through a real pino logger.
 */
import { Writable } from 'node:stream';
import test from 'ava';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { createMultitenant, createTenantDb, PgTenantService, TenantContext, tenantLogMixin, type TenantRequest } from '../src/index.js';
import { instrumentTenancy } from '../src/otel/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
const tracing = instrumentTenancy({ tracer });
test.after.always(() => tracing.close());

/** Spans of one tenant (tests run concurrently and every span goes to the one exporter). */
const spansOf = (tenantId: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.attributes['tenant.id'] === tenantId);
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

async function database(t: { teardown(fn: () => Promise<void>): void }) {
  const test = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => test.drop());
  return { test, db: createTenantDb(test.appPool, { tenancy: test.config }) };
}

test('tenant queries and transactions are spans with the tenant id, children of the active span', async (t) => {
  const { db } = await database(t);
  const a = newTenantId();
  const parentId = await tracer.startActiveSpan('request', async (request) => {
    await db.tenantQuery(a, 'SELECT 1');
    await db.withTenantTransaction(a, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')`, [a]);
      await tx.query('SELECT * FROM orders');
    });
    await db.withTenantTransaction(a, () => Promise.reject(new Error('boom'))).catch(() => undefined);
    await db.withTenantTransaction(a, async (tx) => {
      await tx.query('SELECT 1');
      throw new Error('boom');
    }).catch(() => undefined);
    request.end();
    return request.spanContext().spanId;
  });
  const spans = spansOf(a);
  t.deepEqual(spans.map((s) => [s.name, s.attributes['linkbay.transaction.outcome'], s.attributes['linkbay.transaction.statements']]), [
    ['tenant.query', 'commit', 1],
    ['tenant.transaction', 'commit', 2],
    ['tenant.transaction', 'rollback', 0], // fn threw before sending anything
    ['tenant.transaction', 'rollback', 1],
  ]);
  t.true(spans.every((s) => parentOf(s) === parentId), 'each span is a child of the request span');
  t.deepEqual(spans.map((s) => s.status.code), [SpanStatusCode.UNSET, SpanStatusCode.UNSET, SpanStatusCode.ERROR, SpanStatusCode.ERROR]);
  t.true(spans.every((s) => s.attributes['db.system'] === 'postgresql'));
});

test('a tenant taken from TenantContext is on the span; no active span makes a root span', async (t) => {
  const { db } = await database(t);
  const a = newTenantId();
  await TenantContext.run(a, () => db.tenantQuery(undefined, 'SELECT 1'));
  const [span] = spansOf(a);
  t.is(span?.name, 'tenant.query');
  t.is(span && parentOf(span), undefined);
  t.is(trace.getActiveSpan(), undefined);
});

test('tenant resolution is a span with its outcome, strategy and the resolved tenant', async (t) => {
  const { test } = await database(t);
  const { rows } = await test.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id`);
  const acme = rows[0].id as string;
  const core = createMultitenant({ tenantService: new PgTenantService(test.appPool, { tenancy: test.config }), tenancy: test.config });
  const request = (id: string): TenantRequest => ({ header: (name) => (name.toLowerCase() === 'x-tenant-id' ? id : undefined), host: 'localhost', path: '/' });
  const unknown = newTenantId();
  await core.resolve(request(acme.toUpperCase()));
  await t.throwsAsync(core.resolve(request(unknown)));
  const resolved = spansOf(acme).filter((s) => s.name === 'tenant.resolve');
  t.deepEqual(resolved.map((s) => [s.attributes['linkbay.resolution.outcome'], s.attributes['linkbay.resolution.strategy']]), [['resolved', 'header']]);
  // An unknown tenant's id is not put on a span: only a resolved tenant is.
  const names = exporter.getFinishedSpans().filter((s) => s.name === 'tenant.resolve' && s.attributes['linkbay.resolution.outcome'] === 'unknown');
  t.true(names.length >= 1 && names.every((s) => s.attributes['tenant.id'] === undefined));
});

test('a destroyed client is a span with its reason and tenant', async (t) => {
  const { db } = await database(t);
  const a = newTenantId();
  // The backend ends under the transaction: the client cannot go back to the pool.
  await t.throwsAsync(db.withTenantTransaction(a, (tx) => tx.query('SELECT pg_terminate_backend(pg_backend_pid())')));
  const destroyed = spansOf(a).filter((s) => s.name === 'tenant.client_destroyed');
  t.is(destroyed.length, 1);
  // Which of the two the core sees first depends on when the socket's close arrives.
  t.true(['connection-error', 'not-idle'].includes(String(destroyed[0]?.attributes['linkbay.client.destroy_reason'])));
  t.is(destroyed[0]?.status.code, SpanStatusCode.ERROR);
});

test('after close() no spans are made', async (t) => {
  const { db } = await database(t);
  const own = new InMemorySpanExporter();
  const closed = instrumentTenancy({ tracer: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] }).getTracer('closed'), tenantAttribute: 'app.tenant' });
  const a = newTenantId();
  await db.tenantQuery(a, 'SELECT 1');
  t.is(own.getFinishedSpans().filter((s) => s.attributes['app.tenant'] === a).length, 1);
  closed.close();
  await db.tenantQuery(a, 'SELECT 1');
  t.is(own.getFinishedSpans().filter((s) => s.attributes['app.tenant'] === a).length, 1);
});

test('tenantLogMixin puts the tenant of the context on each pino line, and nothing outside one', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const log = pino({ mixin: tenantLogMixin }, sink);
  const a = newTenantId();
  await TenantContext.run(a, async () => {
    await new Promise((resolve) => setImmediate(resolve));
    log.info('inside');
  });
  log.info('outside');
  t.is(lines.find((l) => l.msg === 'inside')?.tenant_id, a);
  t.false('tenant_id' in (lines.find((l) => l.msg === 'outside') ?? { tenant_id: 'missing line' }));
});
