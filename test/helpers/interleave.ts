import pg from 'pg';
import { tenantQuery, withTenantTransaction, type TenantQueryOptions } from '../../src/index.js';
import { newTenantId } from './db.js';

/** Options passed to every tenantQuery / withTenantTransaction of a run (the prepare mode). */
export type TenantCallOptions = TenantQueryOptions;

export interface OrderRow {
  tenant_id: string;
  item: string;
}

/** Records one check; a failed one is kept with what was seen. */
export class Checks {
  count = 0;
  rows = 0;
  readonly failures: string[] = [];
  expect(ok: boolean, what: () => string): void {
    this.count += 1;
    if (!ok && this.failures.length < 50) this.failures.push(what());
  }
  /** `rows` are exactly the tenant's `expected` items, all carrying its id. */
  expectRows(tenant: string, rows: readonly OrderRow[], expected: ReadonlySet<string>, where: string): void {
    this.rows += rows.length;
    const foreign = rows.filter((r) => r.tenant_id !== tenant);
    this.expect(foreign.length === 0, () => `${where}: ${foreign.length} row(s) of other tenants, e.g. ${foreign[0]?.item}`);
    const items = new Set(rows.map((r) => r.item));
    const same = items.size === expected.size && rows.length === expected.size && [...expected].every((i) => items.has(i));
    this.expect(same, () => `${where}: saw ${rows.length} row(s) [${[...items].slice(0, 5).join(', ')}], expected ${expected.size}`);
  }
}

/**
 * `tenants` tenants, each running `rounds` rounds concurrently with all the others on `pool`:
 * an INSERT by tenantQuery, a withTenantTransaction (INSERT, read the setting, SELECT all), a SELECT
 * of all rows by tenantQuery, and a SELECT that explicitly asks for other tenants' rows.
 */
export async function interleavedRun(pool: pg.Pool, tenants: number, rounds: number, options: TenantCallOptions) {
  const checks = new Checks();
  const written = new Map<string, Set<string>>();
  const pids = new Set<number>();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: tenants }, async (_, n) => {
      const tenant = newTenantId();
      const mine = new Set<string>();
      written.set(tenant, mine);
      for (let round = 0; round < rounds; round += 1) {
        // 1. one-round-trip insert: set_config and the statement in one batch, implicit transaction
        const item1 = `t${n}-r${round}-q`;
        const inserted = await tenantQuery<OrderRow & { setting: string }>(
          pool,
          tenant,
          `INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item, current_setting('app.tenant_id') AS setting`,
          [tenant, item1],
          options,
        );
        mine.add(item1);
        checks.expect(inserted.rows.length === 1 && inserted.rows[0]!.setting === tenant && inserted.rows[0]!.item === item1, () => `insert ${item1}: ${JSON.stringify(inserted.rows)}`);

        // 2. a transaction of three statements
        const item2 = `t${n}-r${round}-tx`;
        const inTx = await withTenantTransaction(
          pool,
          tenant,
          async (tx) => {
            await tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, item2]);
            const who = await tx.query<{ setting: string; pid: number }>(`SELECT current_setting('app.tenant_id') AS setting, pg_backend_pid() AS pid`);
            const all = await tx.query<OrderRow>('SELECT tenant_id, item FROM orders');
            return { who: who.rows[0]!, rows: all.rows };
          },
          options,
        );
        mine.add(item2);
        pids.add(inTx.who.pid);
        checks.expect(inTx.who.setting === tenant, () => `transaction of ${tenant} saw setting ${inTx.who.setting}`);
        checks.expectRows(tenant, inTx.rows, mine, `transaction t${n} r${round}`);

        // 3. one-round-trip select with no WHERE: RLS decides
        const all = await tenantQuery<OrderRow>(pool, tenant, 'SELECT tenant_id, item FROM orders', [], options);
        checks.expectRows(tenant, all.rows, mine, `tenantQuery t${n} r${round}`);

        // 4. asking for the others' rows explicitly finds none
        const others = await tenantQuery<{ n: number }>(pool, tenant, 'SELECT count(*)::int AS n FROM orders WHERE tenant_id <> $1', [tenant], options);
        checks.expect(others.rows[0]!.n === 0, () => `t${n} r${round} counted ${others.rows[0]!.n} rows of other tenants`);
        if (round % 3 === n % 3) await new Promise((r) => setImmediate(r)); // vary the interleaving
      }
    }),
  );
  return { checks, written, pids, ms: performance.now() - started };
}

