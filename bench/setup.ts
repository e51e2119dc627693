/**
 * The benchmark's database: a fresh database with roles of its own (test/helpers/db.ts), three
 * tables holding the same skewed data set, and the generated RLS migrations:
 *
 *   orders            RLS, policyForm 'bare'      tenant_id = NULLIF(current_setting(...), '')::uuid
 *   orders_initplan   RLS, policyForm 'initplan'  tenant_id = (SELECT NULLIF(...)::uuid)
 *   orders_plain      no RLS: queries name the tenant in an explicit WHERE
 *
 * Data: `rows` rows in created_at order (append-only, as an orders table grows), 30% of them for one
 * big tenant and the rest spread at random over `tenants` small tenants. Index (tenant_id, created_at)
 * and primary key (tenant_id, id) on every table; vacuumed and analyzed, autovacuum off.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { defineTenancy } from '../src/config.js';
import { generateRlsSql } from '../src/policies.js';
import { migrateFiles } from '../src/migrations.js';
import { startEmbeddedPostgres } from '../test/helpers/embedded.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/db.js';

export interface DataShape {
  readonly rows: number;
  readonly tenants: number;
  /** Share of all rows held by the big tenant. */
  readonly bigShare: number;
}

export interface BenchEnv {
  readonly db: TestDatabase;
  readonly serverVersion: string;
  readonly embedded: boolean;
  readonly shape: DataShape;
  readonly loadSeconds: number;
  /** pg.Pool of the app role (no BYPASSRLS, owns nothing), max 8. */
  readonly appPool: pg.Pool;
  /** postgres.js on the app role, max 8. */
  readonly sql: postgres.Sql;
  readonly bigTenant: string;
  /** Small tenants with one of their row ids, for lookups. */
  readonly lookups: ReadonlyArray<{ tenant: string; id: string }>;
  /** One small tenant for the skew queries (its row count is `smallRows`). */
  readonly smallTenant: string;
  readonly smallRows: number;
  readonly bigRows: number;
  close(): Promise<void>;
}

const TABLE = (name: string) => `
  CREATE TABLE ${name} (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    item text NOT NULL,
    amount integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
  ) WITH (autovacuum_enabled = off);`;

const INDEXES = (name: string) => `
  ALTER TABLE ${name} ADD PRIMARY KEY (tenant_id, id);
  CREATE INDEX ${name}_tenant_created_idx ON ${name} (tenant_id, created_at);`;

const TABLES = ['orders', 'orders_initplan', 'orders_plain'] as const;

export async function setupBench(shape: DataShape, log: (line: string) => void): Promise<BenchEnv> {
  let stopServer: (() => Promise<void>) | undefined;
  const embedded = !process.env.DATABASE_URL;
  if (embedded) {
    const server = await startEmbeddedPostgres();
    process.env.DATABASE_URL = server.url;
    stopServer = server.stop;
    log(`started embedded PostgreSQL ${server.version}`);
  }
  const db = await createTestDatabase({
    schema: TABLES.map(TABLE).join('\n'),
    tenancy: { tables: ['orders'] },
    migrate: false,
    appPoolMax: 8,
  });
  try {
    const started = performance.now();
    await loadData(db, shape);
    const loadSeconds = (performance.now() - started) / 1000;
    log(`loaded ${shape.rows} rows x 3 tables in ${loadSeconds.toFixed(1)} s`);
    await applyPolicies(db);

    const serverVersion = (await db.superQuery<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
    const bigTenant = tenantUuid('big');
    const { rows: counts } = await db.superQuery<{ tenant_id: string; n: string }>(
      `SELECT tenant_id, count(*) AS n FROM orders_plain GROUP BY tenant_id ORDER BY tenant_id`,
    );
    const bigRows = Number(counts.find((c) => c.tenant_id === bigTenant)!.n);
    const small = counts.filter((c) => c.tenant_id !== bigTenant);
    const typical = small.sort((x, y) => Number(x.n) - Number(y.n))[small.length >> 1]!; // the median small tenant
    const { rows: lookups } = await db.superQuery<{ tenant: string; id: string }>(
      `SELECT DISTINCT ON (tenant_id) tenant_id AS tenant, id::text AS id
         FROM orders_plain WHERE tenant_id <> $1 ORDER BY tenant_id, id LIMIT 100`,
      [bigTenant],
    );
    const sql = postgres(db.appUrl, { max: 8, onnotice: () => undefined });
    return {
      db,
      serverVersion,
      embedded,
      shape,
      loadSeconds,
      appPool: db.appPool,
      sql,
      bigTenant,
      lookups,
      smallTenant: typical.tenant_id,
      smallRows: Number(typical.n),
      bigRows,
      close: async () => {
        await sql.end({ timeout: 5 });
        await db.drop();
        await stopServer?.();
      },
    };
  } catch (error) {
    await db.drop().catch(() => undefined);
    await stopServer?.();
    throw error;
  }
}

/** Deterministic tenant ids, as the load SQL makes them: `md5('lbmt-bench-<name>')::uuid`. */
export function tenantUuid(name: string | number): string {
  const hex = createHash('md5').update(`lbmt-bench-${name}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

async function loadData(db: TestDatabase, shape: DataShape): Promise<void> {
  // One simple-protocol string, so setseed and the INSERT share a session: the same data every run.
  await db.superQuery(`
    SELECT setseed(0.42);
    INSERT INTO orders_plain (tenant_id, id, item, amount, created_at)
    SELECT CASE WHEN random() < ${shape.bigShare} THEN md5('lbmt-bench-big')::uuid
                ELSE md5('lbmt-bench-' || floor(random() * ${shape.tenants})::int)::uuid END,
           i, 'item ' || i, ((i::bigint * 7919) % 10000)::int,
           timestamptz '2025-01-01 00:00:00+00' + i * interval '20 seconds'
      FROM generate_series(1, ${shape.rows}) AS i;
    INSERT INTO orders SELECT * FROM orders_plain;
    INSERT INTO orders_initplan SELECT * FROM orders_plain;
    ${TABLES.map(INDEXES).join('\n')}
  `);
  // VACUUM cannot run in a multi-statement string (an implicit transaction block). A VACUUM that
  // runs while some snapshot older than the load is still open cannot set the visibility map, and
  // the planner then prices index-only scans as heap scans: seen here on one table of three, which
  // skewed the comparison. So: repeat until every page is all-visible. Autovacuum is off on these
  // tables (above) so that it neither races this nor wakes up in the middle of a measurement.
  for (const table of TABLES) {
    for (let attempt = 1; ; attempt += 1) {
      await db.superQuery(`VACUUM (ANALYZE) ${table}`);
      const { rows } = await db.superQuery<{ ok: boolean }>(
        `SELECT relallvisible >= relpages AS ok FROM pg_class WHERE oid = $1::regclass`,
        [table],
      );
      if (rows[0]!.ok) break;
      if (attempt === 5) throw new Error(`VACUUM could not make ${table} all-visible`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/**
 * The library's generated migrations: `orders` with the bare policy form, `orders_initplan` with
 * the initplan form (its roles file is the same one and is dropped). Applied as in production,
 * under the migration lock; then the app role gets the plain table.
 */
async function applyPolicies(db: TestDatabase): Promise<void> {
  // With the library's registry (linkbay.tenants), for benchmarks that resolve tenants through it.
  const bare = generateRlsSql(defineTenancy({ roles: db.config.roles, tables: ['orders'], policyForm: 'bare' }));
  const initplan = generateRlsSql(
    defineTenancy({ roles: db.config.roles, tables: ['orders_initplan'], policyForm: 'initplan' }),
    { includeRegistry: false, startIndex: bare.length },
  ).slice(1);
  await migrateFiles({ databaseUrl: db.superUrl, files: [...bare, ...initplan] });
  await db.superQuery(`GRANT SELECT, INSERT, UPDATE, DELETE ON orders_plain TO ${db.config.roles.app}`);
}
