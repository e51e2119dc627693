import pg from 'pg';
import type { TenantDb } from '../../src/index.js';
import { newTenantId, type TestDatabase } from './db.js';
import type { OrderRow } from './interleave.js';

/** Items are unique per tenant, so a repeated item is a unique violation of that batch alone. */
export const UNIQUE_ORDERS_SCHEMA = `
  CREATE TABLE orders (
    tenant_id uuid NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    item text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, item)
  );`;

/** Waits for `condition` until `ms` have passed; returns whether it held. */
export async function waitFor(condition: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}

/** Every (tenant, item) stored for `tenants`, seen as the superuser, sorted. */
export async function storedRows(db: TestDatabase, tenants: readonly string[]): Promise<Array<[string, string]>> {
  const { rows } = await db.superQuery<OrderRow>('SELECT tenant_id::text, item FROM orders WHERE tenant_id = ANY($1::uuid[]) ORDER BY 1, 2', [tenants]);
  return rows.map((r) => [r.tenant_id, r.item]);
}

const LOCK = 4_242;

/**
 * Sends `calls` through the handle while a first batch waits on an advisory lock the superuser
 * holds, so that all of them are on the wire behind it before anything is answered; runs
 * `whileBlocked`, then lets the lock go. The handle should have one connection.
 */
export async function blockedPipeline(
  db: TestDatabase,
  handle: TenantDb,
  calls: ReadonlyArray<[tenant: string, text: string, values: unknown[]]>,
  whileBlocked?: () => Promise<void>,
) {
  const holder = new pg.Client({ connectionString: db.superUrl });
  await holder.connect();
  try {
    await holder.query('SELECT pg_advisory_lock($1)', [LOCK]);
    const blocker = handle.tenantQuery(newTenantId(), 'SELECT pg_advisory_xact_lock($1)', [LOCK]);
    blocker.catch(() => undefined);
    const waiting = async () =>
      (await db.superQuery(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND usename = $2 AND wait_event_type = 'Lock'`, [db.name, db.config.roles.app])).rowCount === 1;
    if (!(await waitFor(waiting))) throw new Error('the first batch never waited on the lock');
    const pending = calls.map(([tenant, text, values]) => handle.tenantQuery(tenant, text, values));
    const all = calls.length + 1;
    await waitFor(() => handle.pipeline!.stats().inFlight === all);
    const inFlightSeen = handle.pipeline!.stats().inFlight - 1;
    await whileBlocked?.();
    await holder.query('SELECT pg_advisory_unlock($1)', [LOCK]);
    const results = await Promise.allSettled(pending);
    await blocker.catch(() => undefined);
    const pids = results.flatMap((r) => (r.status === 'fulfilled' ? r.value.rows.map((row) => row.pid) : []));
    return { results, inFlightSeen, pids };
  } finally {
    await holder.end();
  }
}

export interface WorkloadOutcome {
  ok: number;
  failed: number;
  /** Error code (SQLSTATE, or the library's) → how many. */
  errors: Map<string, number>;
  /** Checks that did not hold: a foreign row, a missing committed row, an expected error that did not come. */
  failures: string[];
  kills: number;
  maxInFlight: number;
  /** Tenant → items whose INSERT returned (committed) / that were tried. */
  committed: Map<string, Set<string>>;
  attempted: Map<string, Set<string>>;
}

/**
 * `tenants` tenants at once, `rounds` rounds each, all through `handle`: an INSERT of a new item; every
 * third round an INSERT of the previous item again (a unique violation); every fourth a division by
 * zero; then a SELECT of all the tenant's rows, checked against what it committed. With `killEvery`,
 * one backend of the app role is terminated after every `killEvery` completed calls.
 */
export async function pipelineWorkload(
  db: TestDatabase,
  handle: TenantDb,
  plan: { tenants: number; rounds: number; killEvery?: number; /** Error codes that may fail any call. */ tolerate?: readonly string[] },
): Promise<WorkloadOutcome> {
  const out: WorkloadOutcome = { ok: 0, failed: 0, errors: new Map(), failures: [], kills: 0, maxInFlight: 0, committed: new Map(), attempted: new Map() };
  let done = 0;
  const fail = (what: string) => out.failures.length < 20 && out.failures.push(what);
  const call = async <T>(expectError: string | undefined, run: () => Promise<T>): Promise<T | undefined> => {
    let value: T | undefined;
    try {
      const pending = run();
      out.maxInFlight = Math.max(out.maxInFlight, handle.pipeline!.stats().inFlight);
      value = await pending;
      out.ok += 1;
      if (expectError) fail(`expected ${expectError}, it succeeded`);
    } catch (error) {
      const code = String((error as { code?: string }).code);
      out.errors.set(code, (out.errors.get(code) ?? 0) + 1);
      out.failed += 1;
      if (code !== expectError && code !== 'LBMT_PIPELINE_BROKEN' && !plan.tolerate?.includes(code)) fail(`unexpected ${code}: ${(error as Error).message}`);
    }
    done += 1;
    if (plan.killEvery && done % plan.killEvery === 0) {
      const { rows } = await db.superQuery(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = $1 AND usename = $2 ORDER BY random() LIMIT 1`,
        [db.name, db.config.roles.app],
      );
      if (rows[0]?.killed) out.kills += 1;
    }
    return value;
  };
  const insert = 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item';
  await Promise.all(
    Array.from({ length: plan.tenants }, async () => {
      const tenant = newTenantId();
      const committed = new Set<string>();
      const attempted = new Set<string>();
      out.committed.set(tenant, committed);
      out.attempted.set(tenant, attempted);
      const own = (rows: readonly OrderRow[], where: string) => {
        const foreign = rows.filter((r) => r.tenant_id !== tenant);
        if (foreign.length > 0) fail(`${where}: ${foreign.length} row(s) of another tenant`);
      };
      const write = async (item: string, expectError?: string) => {
        attempted.add(item);
        const result = await call(expectError, () => handle.tenantQuery<OrderRow>(tenant, insert, [tenant, item]));
        if (result) {
          own(result.rows, `INSERT ${item}`);
          committed.add(item);
        }
      };
      for (let round = 0; round < plan.rounds; round += 1) {
        await write(`r${round}`);
        // A duplicate only when the first write is known to have committed (else it may be the first).
        if (round % 3 === 2 && committed.has(`r${round - 1}`)) await write(`r${round - 1}`, '23505');
        if (round % 4 === 3) await call('22012', () => handle.tenantQuery(tenant, 'SELECT 1 / (count(*) - count(*)) FROM orders'));
        const all = await call(undefined, () => handle.tenantQuery<OrderRow>(tenant, 'SELECT tenant_id, item FROM orders'));
        if (all) {
          own(all.rows, 'SELECT');
          const seen = new Set(all.rows.map((r) => r.item));
          const missing = [...committed].filter((item) => !seen.has(item));
          if (missing.length > 0) fail(`SELECT: committed ${missing.join(', ')} missing`);
        }
      }
    }),
  );
  return out;
}
