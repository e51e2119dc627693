import { CompiledQuery, type DatabaseConnection, type Driver, type TransactionSettings } from 'kysely';
import type { TenantDb } from '../tenant-db.js';
import { TenantConnection } from './connection.js';

/** What the tenant dialect runs on. */
export interface TenantDialectConfig {
  /** The handle from `createTenantDb(pool, { tenancy, ... })`: its options apply to every query. */
  readonly db: TenantDb;
  /**
   * The tenant of every query. Default: TenantContext's tenant, read when Kysely acquires a
   * connection (each query, or each transaction): one Kysely instance serves every request.
   */
  readonly tenantId?: string | number | bigint;
}

/**
 * Kysely's Driver over a tenant handle. It owns no pool: the handle's pool stays yours, so
 * `kysely.destroy()` leaves it open.
 */
export class TenantDriver implements Driver {
  constructor(private readonly config: TenantDialectConfig) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    // Canonicalised (or TenantRequiredError) before any pool is touched.
    return new TenantConnection(this.config.db, this.config.db.tenantIdOf(this.config.tenantId));
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await own(connection).begin(settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await own(connection).commit();
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await own(connection).rollback();
  }

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await own(connection).savepointCommand(savepointQuery('savepoint', name));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await own(connection).savepointCommand(savepointQuery('rollback to', name));
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await own(connection).savepointCommand(savepointQuery('release', name));
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // Kysely always ends its transactions first; one left open would hold a pooled client forever.
    if (own(connection).inTransaction) await own(connection).rollback();
  }

  async destroy(): Promise<void> {}
}

function own(connection: DatabaseConnection): TenantConnection {
  if (!(connection instanceof TenantConnection)) throw new TypeError('not a connection of the tenant dialect');
  return connection;
}

/** `SAVEPOINT "name"` and friends (Kysely's savepoint names are identifiers it chose or was given). */
function savepointQuery(command: 'savepoint' | 'rollback to' | 'release', name: string): CompiledQuery {
  const keyword = command === 'savepoint' ? 'SAVEPOINT' : command === 'release' ? 'RELEASE SAVEPOINT' : 'ROLLBACK TO SAVEPOINT';
  return CompiledQuery.raw(`${keyword} "${name.replace(/"/g, '""')}"`);
}
