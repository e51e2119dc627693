import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { defineTenancy, type TenancyConfig, type TenancyInput } from '../../src/config.js';
import { generateRlsSql } from '../../src/policies.js';
import { migrateFiles } from '../../src/migrations.js';

/** The superuser URL of the server under test (set by test/run.ts or by the caller). */
export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

/** `base` with another user, password and/or database. */
export function withUrl(base: string, parts: { user?: string; password?: string; database?: string }): string {
  const url = new URL(base);
  if (parts.user !== undefined) url.username = parts.user;
  if (parts.password !== undefined) url.password = parts.password;
  if (parts.database !== undefined) url.pathname = `/${parts.database}`;
  return url.toString();
}

export interface TestDatabase {
  readonly name: string;
  readonly config: TenancyConfig;
  /** Superuser on this database: for setup and for checks that must see everything. Never for app queries. */
  readonly superUrl: string;
  readonly ownerUrl: string;
  readonly appUrl: string;
  readonly adminUrl: string;
  /** The application's pool: the non-superuser app role without BYPASSRLS. */
  readonly appPool: pg.Pool;
  /** The admin role (BYPASSRLS), for cross-tenant checks. */
  readonly adminPool: pg.Pool;
  /** Runs SQL as the superuser (setup). */
  superQuery<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** Creates a pool on this database as the given role (closed by `drop`). */
  pool(url: string, config?: pg.PoolConfig): pg.Pool;
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** SQL run as the superuser before the RLS migrations (creates the tenant tables). */
  schema?: string;
  /** Tenancy config; roles are always replaced by roles unique to this database. */
  tenancy?: Omit<TenancyInput, 'roles'>;
  /** Apply the generated migrations. Default true. */
  migrate?: boolean;
  appPoolMax?: number;
}

const PASSWORD = 'lbmt-test';

/**
 * A fresh database with roles of its own (roles are cluster-wide, so each test database gets
 * uniquely named ones), its tables created by `schema` and made tenant-isolated by the generated
 * migrations, applied as the owner would in production.
 */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const suffix = randomBytes(5).toString('hex');
  const name = `lbmt_test_${suffix}`;
  const config = defineTenancy({
    ...options.tenancy,
    roles: { owner: `t${suffix}_owner`, app: `t${suffix}_app`, admin: `t${suffix}_admin` },
  });
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  try {
    await root.query(`CREATE DATABASE ${name}`);
  } finally {
    await root.end();
  }
  const superUrl = withUrl(serverUrl(), { database: name });
  const pools: pg.Pool[] = [];
  const superPool = new pg.Pool({ connectionString: superUrl, max: 2 });
  superPool.on('error', () => undefined); // as for the pools below
  pools.push(superPool);
  const superQuery = (text: string, values?: unknown[]) => superPool.query(text, values);

  // Roles first (the generated roles file would do it too) so the schema can grant to them.
  const files = generateRlsSql(config);
  await superQuery(files[0]!.sql);
  for (const role of Object.values(config.roles)) {
    await superQuery(`ALTER ROLE ${role} PASSWORD '${PASSWORD}'`);
  }
  if (options.schema) await superQuery(options.schema);
  if (options.migrate ?? true) await migrateFiles({ databaseUrl: superUrl, files });

  const roleUrl = (role: string) => withUrl(serverUrl(), { user: role, password: PASSWORD, database: name });
  const pool = (url: string, poolConfig: pg.PoolConfig = {}) => {
    const created = new pg.Pool({ connectionString: url, ...poolConfig });
    created.on('error', () => undefined); // killed backends in tests surface on queries, not here
    pools.push(created);
    return created;
  };
  const appUrl = roleUrl(config.roles.app);
  const adminUrl = roleUrl(config.roles.admin);
  const appPool = pool(appUrl, { max: options.appPoolMax ?? 4 });
  const adminPool = pool(adminUrl, { max: 2 });
  return {
    name,
    config,
    superUrl,
    ownerUrl: roleUrl(config.roles.owner),
    appUrl,
    adminUrl,
    appPool,
    adminPool,
    superQuery,
    pool,
    drop: async () => {
      await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
      const client = new pg.Client({ connectionString: serverUrl() });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        for (const role of Object.values(config.roles)) await client.query(`DROP ROLE IF EXISTS ${role}`);
      } finally {
        await client.end();
      }
    },
  };
}

/** The schema most tests use: one tenant table `orders` and a tenants-free lookup table. */
export const ORDERS_SCHEMA = `
  CREATE TABLE orders (
    tenant_id uuid NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    item text NOT NULL,
    amount_cents integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
  );
`;

/** A random tenant id (uuid). */
export function newTenantId(): string {
  return crypto.randomUUID();
}
