/**
 * linkbay-multitenant/kysely: Kysely over the tenant handle. Every query runs as a tenant
 * (`db.tenantQuery`), every `transaction().execute(fn)` is one `db.withTenantTransaction`, so RLS
 * applies to whatever Kysely builds. kysely is an optional peer dependency of this subpath.
 */
import {
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type KyselyConfig,
  type QueryCompiler,
} from 'kysely';
import type { TenantDb } from '../tenant-db.js';
import { TenantDriver, type TenantDialectConfig } from './driver.js';

export { TenantDriver, type TenantDialectConfig } from './driver.js';
export { TenantConnection } from './connection.js';

/**
 * Kysely's PostgreSQL dialect (compiler, adapter, introspector) with a driver that runs every
 * query through the tenant handle.
 *
 * @example
 * const kysely = new Kysely<Database>({ dialect: new TenantDialect({ db }), plugins: [new CamelCasePlugin()] });
 */
export class TenantDialect implements Dialect {
  constructor(private readonly config: TenantDialectConfig) {
    if (!config?.db || typeof config.db.tenantQuery !== 'function') throw new TypeError('`db` must be a handle from createTenantDb()');
    if (config.tenantId !== undefined) config.db.tenantIdOf(config.tenantId); // a bad id is an error now, not at the first query
  }

  createDriver(): Driver {
    return new TenantDriver(this.config);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/**
 * A Kysely instance whose queries run as a tenant: `tenantId`'s, or (without it) TenantContext's
 * at the time of each query or transaction — one instance made at start-up serves every request.
 *
 * @example
 * const kysely = tenantKysely<Database>(db);                  // the request's tenant
 * const orders = await kysely.selectFrom('orders').selectAll().execute(); // only its rows, by RLS
 * await kysely.transaction().execute(async (trx) => { ... }); // one tenant transaction
 * const other = tenantKysely<Database>(db, { tenantId });     // a named tenant (a job, a script)
 */
export function tenantKysely<DB>(db: TenantDb, options: { tenantId?: string | number | bigint } & Omit<KyselyConfig, 'dialect'> = {}): Kysely<DB> {
  const { tenantId, ...config } = options;
  return new Kysely<DB>({ ...config, dialect: new TenantDialect({ db, ...(tenantId !== undefined ? { tenantId } : {}) }) });
}
