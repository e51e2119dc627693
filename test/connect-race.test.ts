/**
 * A backend terminated as its connection opens: pg-pool removes its own 'error' listener from a new
 * client as it hands it over, and the caller gets the client a microtask later. When the
 * ReadyForQuery and the termination's ErrorResponse arrive in one read, pg emits 'error' in
 * between, with no listener: an uncaught exception that ends the process (seen in CI on the
 * pipelined workload, backends killed at random). A relay in front of the real server holds the
 * server's bytes from the ReadyForQuery on, the test terminates the backend, and the relay delivers
 * both messages in one write.
 */
import test from 'ava';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import pg from 'pg';
import { createTenantDb, tenantQuery, withTenantTransaction } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { until } from './helpers/until.js';

/** Relays to the server; on the first connection, from its ReadyForQuery on, holds what the server sends until it closes, then writes it at once. */
async function relayHoldingReady(target: string) {
  const { hostname, port } = new URL(target);
  let holding = 0;
  const server = createServer((client: Socket) => {
    const upstream = connect(Number(port || 5432), hostname);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.pipe(upstream);
    let buffered: Buffer[] | undefined;
    let pending = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      if (buffered) return void buffered.push(chunk);
      // Forward whole messages (type byte, int32 length) until a ReadyForQuery ('Z').
      pending = Buffer.concat([pending, chunk]);
      let offset = 0;
      while (pending.length - offset >= 5) {
        const length = pending.readInt32BE(offset + 1);
        if (pending.length - offset < 1 + length) break;
        // Only the first connection: a retry by the caller opens the next one, relayed as it is.
        if (pending[offset] === 0x5a && holding === 0) {
          buffered = [pending.subarray(offset)];
          holding += 1;
          break;
        }
        offset += 1 + length;
      }
      client.write(pending.subarray(0, offset));
      pending = buffered ? Buffer.alloc(0) : pending.subarray(offset);
    });
    let flushed = false;
    const flush = () => {
      if (flushed) return;
      flushed = true;
      if (buffered) client.end(Buffer.concat(buffered));
      else client.end();
    };
    upstream.on('end', flush);
    upstream.on('close', flush);
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = (connectionString: string) => Object.assign(new URL(connectionString), { hostname: '127.0.0.1', port: String((server.address() as AddressInfo).port) }).toString();
  return { url, get holding() { return holding; }, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const CONNECTION_LOST = /not queryable|terminat|connection/i;

async function killAsItOpens(t: { teardown(fn: () => Promise<void> | void): void }, db: TestDatabase, call: (pool: pg.Pool) => Promise<unknown>) {
  const relay = await relayHoldingReady(db.appUrl);
  const pool = new pg.Pool({ connectionString: relay.url(db.appUrl), max: 1 });
  pool.on('error', () => undefined); // what every application does for its idle clients
  t.teardown(async () => {
    await pool.end().catch(() => undefined);
    await relay.close();
  });
  const started = Date.now();
  const pending = call(pool);
  pending.catch(() => undefined);
  await until(() => relay.holding === 1, 10_000, 'the relay to hold a ReadyForQuery');
  const { rows } = await db.superQuery(`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = $1 AND usename = $2`, [db.name, db.config.roles.app]);
  if (!rows.some((r) => r.killed)) throw new Error('no backend to terminate');
  // The call ends with the connection (not with some timeout of its own).
  return pending.finally(() => {
    if (Date.now() - started > 5_000) throw new Error(`the call took ${Date.now() - started} ms`);
  });
}

test.serial('tenantQuery on a connection whose backend is terminated as it opens: not a crashed process; nothing was sent, so it runs on a fresh connection', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const result = await killAsItOpens(t, db, (pool) => tenantQuery(pool, newTenantId(), 'SELECT 1 AS one', [], { tenancy: db.config }));
  t.deepEqual((result as { rows: unknown[] }).rows, [{ one: 1 }]);
});

test.serial('withTenantTransaction and the pipelined mode too', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const tenant = newTenantId();
  const setting = (rows: unknown) => (rows as { rows: Array<{ tenant: string }> }).rows[0]?.tenant;
  t.is(setting(await killAsItOpens(t, db, (pool) => withTenantTransaction(pool, tenant, (tx) => tx.query(`SELECT current_setting('app.tenant_id') AS tenant`), { tenancy: db.config }))), tenant);
  const piped = (pool: pg.Pool) => createTenantDb(pool, { tenancy: db.config, pipeline: { connections: 1, depth: 4 } }).tenantQuery(tenant, `SELECT current_setting('app.tenant_id') AS tenant`);
  const outcome = await killAsItOpens(t, db, piped).then(setting, (error: Error) => error);
  // Pipelined batches are not retried: a connection lost under them fails them, with its reason.
  if (outcome instanceof Error) t.regex(outcome.message, CONNECTION_LOST);
  else t.is(outcome, tenant);
});
