import { randomBytes } from 'node:crypto';
import type { TestFn } from 'ava';
import pg from 'pg';
import { defineTenancy, type TenancyInput } from '../../src/config.js';
import { generateRlsSql } from '../../src/policies.js';
import { migrateFiles } from '../../src/migrations.js';
import type { TestDatabase } from './db.js';
import { citusRequired, citusUnavailable, startCitusCluster, type CitusCluster } from './citus.js';

export interface CitusTestDatabaseOptions {
  /** SQL run as the superuser on the coordinator before the generated migrations. */
  schema?: string;
  /** Tenancy; `engine: 'citus'` unless given. Roles are always unique to this database. */
  tenancy?: Omit<TenancyInput, 'roles'>;
  /** Apply the generated migrations. Default true. */
  migrate?: boolean;
  appPoolMax?: number;
}

export interface CitusTestDatabase extends TestDatabase {
  readonly cluster: CitusCluster;
  /** Superuser query on this database on a worker (where the shards are). */
  workerQuery<R extends pg.QueryResultRow = any>(worker: number, text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

const PASSWORD = 'lbmt-test';

/**
 * createTestDatabase (test/helpers/db.ts) on a Citus cluster: a database with citus on every node,
 * roles of its own (created on the coordinator, propagated by Citus), the schema and the generated
 * migrations applied on the coordinator.
 */
export async function createCitusTestDatabase(cluster: CitusCluster, options: CitusTestDatabaseOptions = {}): Promise<CitusTestDatabase> {
  const suffix = randomBytes(5).toString('hex');
  const name = `lbmt_citus_${suffix}`;
  const config = defineTenancy({
    engine: 'citus',
    ...options.tenancy,
    roles: { owner: `c${suffix}_owner`, app: `c${suffix}_app`, admin: `c${suffix}_admin` },
  });
  await cluster.createDatabase(name);
  const superUrl = cluster.url(name);
  const pools: pg.Pool[] = [];
  const pool = (url: string, poolConfig: pg.PoolConfig = {}) => {
    const created = new pg.Pool({ connectionString: url, ...poolConfig });
    created.on('error', () => undefined);
    pools.push(created);
    return created;
  };
  const superPool = pool(superUrl, { max: 2 });
  const superQuery = (text: string, values?: unknown[]) => superPool.query(text, values);
  const workerPools = cluster.workers.map((w) => pool(cluster.url(name, w), { max: 1 }));
  const workerQuery = (worker: number, text: string, values?: unknown[]) => workerPools[worker]!.query(text, values);

  const files = generateRlsSql(config);
  await superQuery(files[0]!.sql);
  for (const role of Object.values(config.roles)) await superQuery(`ALTER ROLE ${role} PASSWORD '${PASSWORD}'`);
  if (options.schema) await superQuery(options.schema);
  if (options.migrate ?? true) await migrateFiles({ databaseUrl: superUrl, files });

  const roleUrl = (role: string) => {
    const url = new URL(superUrl);
    url.username = role;
    url.password = PASSWORD;
    return url.toString();
  };
  const appUrl = roleUrl(config.roles.app);
  const adminUrl = roleUrl(config.roles.admin);
  return {
    name,
    config,
    cluster,
    superUrl,
    ownerUrl: roleUrl(config.roles.owner),
    appUrl,
    adminUrl,
    appPool: pool(appUrl, { max: options.appPoolMax ?? 4 }),
    adminPool: pool(adminUrl, { max: 2 }),
    superQuery,
    workerQuery,
    pool,
    drop: async () => {
      await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
      await cluster.dropDatabase(name);
      const roles = Object.values(config.roles);
      for (const node of [cluster.coordinator, ...cluster.workers]) {
        const client = new pg.Client({ connectionString: cluster.url('postgres', node) });
        await client.connect();
        try {
          for (const role of roles) await client.query(`DROP ROLE IF EXISTS ${role}`);
        } finally {
          await client.end();
        }
      }
    },
  };
}

/**
 * One cluster per test file, started in `before` and stopped in `after.always`. Returns the test
 * function to declare the file's tests with: `test.skip` (with a message, once) when Citus is
 * missing, unless LBMT_CITUS=require, where the `before` hook fails instead.
 */
export function useCitusCluster(test: TestFn): { citusTest: TestFn | TestFn['skip']; cluster(): CitusCluster } {
  let cluster: CitusCluster | undefined;
  const missing = citusUnavailable();
  if (missing && !citusRequired()) {
    console.warn(`Citus tests skipped: ${missing}`);
    return { citusTest: test.skip, cluster: () => { throw new Error('Citus is not available'); } };
  }
  test.before(async () => {
    if (missing) throw new Error(`LBMT_CITUS=require but ${missing}`);
    cluster = await startCitusCluster();
  });
  test.after.always(async () => {
    await cluster?.stop();
  });
  return {
    citusTest: test,
    cluster: () => {
      if (!cluster) throw new Error('the Citus cluster did not start');
      return cluster;
    },
  };
}

/**
 * Orders and their lines (colocated by tenant), plus a reference table of plans. bigserial, not an
 * identity column: a table with a foreign key to a reference table becomes a Citus local table
 * first, and Citus cannot convert one with an identity column (docs/citus.md).
 */
export const CITUS_SCHEMA = `
  CREATE TABLE plans (id text PRIMARY KEY, label text NOT NULL);
  INSERT INTO plans VALUES ('basic', 'Basic'), ('pro', 'Pro');
  GRANT SELECT ON plans TO PUBLIC;
  CREATE TABLE orders (
    tenant_id uuid NOT NULL,
    id bigserial,
    item text NOT NULL,
    plan text REFERENCES plans (id),
    amount_cents integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
  );
  CREATE TABLE order_lines (
    tenant_id uuid NOT NULL,
    order_id bigint NOT NULL,
    line integer NOT NULL,
    sku text NOT NULL,
    PRIMARY KEY (tenant_id, order_id, line)
  );
`;
export const CITUS_TABLES = { tables: ['orders', 'order_lines'], globalTables: ['plans'] };
