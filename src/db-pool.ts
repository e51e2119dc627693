import pg from 'pg';
import type { QueryResult, QueryResultRow } from 'pg';
import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { TenancyConfigError, TenantNotFoundError, TenantSuspendedError } from './errors.js';
import { redactUrl, rlsBypassReason } from './database-url.js';
import type { QueryInput } from './prelude.js';
import type { Tenant, TenantService } from './tenants.js';
import { createTenantDb, isTenantDb, type TenantDb, type TenantDbOptions } from './tenant-db.js';
import {
  openTransactionPool,
  resolveTenantId,
  tenantQuery,
  withTenantTransaction,
  type TenantPool,
  type TenantQueryOptions,
  type TenantTransaction,
  type TenantTransactionOptions,
} from './transaction.js';

export interface TenantDBPoolOptions extends TenantDbOptions {
  /** Where tenants are looked up (status and `databaseUrl`): e.g. `core.tenants`, cached. */
  tenantService: TenantService;
  /**
   * The shared database, for tenants whose `databaseUrl` is null (isolated by RLS): a handle
   * (`createTenantDb`), whose tenancy and options (prepare, guard, statement timeout) then apply to
   * every tenant database's transactions too; or its bare pool, with those options given here.
   */
  sharedPool: TenantPool | TenantDb;
  /** Config of each pool opened for a tenant database (the URL comes from the registry). Default `{ max: 5, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000 }`. */
  pool?: Omit<pg.PoolConfig, 'connectionString'>;
  /** Most tenant-database pools open at once; the least recently used is closed beyond it. Default 50. */
  maxPools?: number;
}

export interface TenantDBPoolStats {
  /** Open pools, by database URL with the password redacted. */
  readonly pools: ReadonlyArray<{ database: string; total: number; idle: number; waiting: number }>;
  /** Pools closed so far because more than `maxPools` were needed. */
  readonly evictions: number;
}

/**
 * Pools for tenants that have a database of their own (the seed's TenantDBPool). A tenant's
 * `databaseUrl` in the registry picks its database; tenants without one use the shared pool, under
 * RLS. Tenants on the same URL share one pool. Every transaction still sets the tenant (RLS may
 * apply in a tenant database too), and goes through `withTenantTransaction` / `tenantQuery`, with
 * their guarantees.
 *
 * Unknown tenants are TenantNotFoundError, suspended, deleted or provisioning ones TenantSuspendedError, before any
 * connection is opened. `closeTenantPool` (when a tenant is deleted or moved) stops the pool taking
 * new work at once and lets transactions in flight finish: pg's `end()` closes each connection as it
 * is released.
 *
 * @example
 * const pools = new TenantDBPool({ tenantService: core.tenants, sharedPool: appPool });
 * const orders = await pools.withTenantTransaction(tenantId, (tx) => tx.query('SELECT * FROM orders'));
 * await pools.closeAll(); // at shutdown
 */
export class TenantDBPool {
  private readonly tenancy: TenancyConfig;
  private readonly sharedPool: TenantPool;
  /** The handle options every transaction is sent with (a call's own options win). */
  private readonly defaults: TenantTransactionOptions;
  private readonly config: Omit<pg.PoolConfig, 'connectionString'>;
  /** Pools by database URL, least recently used first. */
  private readonly pools = new Map<string, pg.Pool>();
  private readonly maxPools: number;
  private readonly closing = new Set<Promise<void>>();
  /** Runs of withTenantTransaction / tenantQuery using each pool right now. */
  private readonly users = new Map<pg.Pool, number>();
  /** Pools pushed out or closed while in use: ended when their last run is over. */
  private readonly retiring = new Map<pg.Pool, { promise: Promise<void>; resolve: () => void }>();
  /** The database URL each tenant was last served from (closeTenantPool after a move). */
  private readonly lastUrl = new Map<string, string>();
  /** Per pool: the check that its role is subject to RLS (see `verify`). */
  private readonly verified = new WeakMap<pg.Pool, Promise<void>>();
  private evictions = 0;
  private closed = false;

  constructor(private readonly options: TenantDBPoolOptions) {
    if (!options?.tenantService) throw new TypeError('`tenantService` is required');
    if (!options.sharedPool) throw new TypeError('`sharedPool` is required');
    const maxPools = options.maxPools ?? 50;
    if (!Number.isSafeInteger(maxPools) || maxPools < 1) throw new TypeError('`maxPools` must be a positive integer');
    const { tenantService: _service, sharedPool: shared, pool: _pool, maxPools: _max, ...handleOptions } = options;
    if (isTenantDb(shared)) {
      const given = Object.keys(handleOptions).filter((key) => handleOptions[key as keyof typeof handleOptions] !== undefined);
      if (given.length) throw new TypeError(`\`sharedPool\` is a handle: set ${given.join(', ')} on it (createTenantDb), not here`);
    }
    // One handle for the shared database; its options are every tenant database's too.
    const handle = isTenantDb(shared) ? shared : createTenantDb(shared, handleOptions);
    this.sharedPool = handle.pool;
    this.defaults = handle.options;
    this.tenancy = handle.tenancy;
    this.config = { max: 5, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000, ...options.pool };
    this.maxPools = maxPools;
  }

  /**
   * The pool `tenantId`'s transactions run on: its database's, or the shared one. For direct use
   * (a cursor, a COPY); it may be closed once another database's pool pushes it out (`maxPools`).
   * `withTenantTransaction` and `tenantQuery` below keep it open while they use it.
   */
  async poolFor(tenantId?: string | number | bigint): Promise<TenantPool> {
    const pool = this.pick(await this.tenant(tenantId));
    await this.verified.get(pool as pg.Pool);
    return pool;
  }

  /** Synchronous from the tenant to its pool: nothing can retire the pool in between. */
  private pick(tenant: Tenant): TenantPool {
    if (this.closed) throw new Error('TenantDBPool is closed');
    const url = tenant.databaseUrl;
    if (!url) return this.sharedPool;
    this.lastUrl.delete(tenant.id);
    this.lastUrl.set(tenant.id, url);
    if (this.lastUrl.size > 10_000) this.lastUrl.delete(this.lastUrl.keys().next().value as string);
    let pool = this.pools.get(url);
    if (pool) {
      this.pools.delete(url); // most recently used last
    } else {
      pool = new pg.Pool({ ...this.config, connectionString: url });
      // A connection that dies while idle is dropped by pg; the next query on the pool reports
      // trouble, if any. Without a listener the 'error' event would end the process.
      pool.on('error', () => undefined);
      const verifying = verify(pool, url);
      this.verified.set(pool, verifying);
      // Every use awaits the check and gets its error. The pool is then dropped, so the next use
      // checks again on a new one (the database may be back, the role fixed).
      const created = pool;
      verifying.catch(() => {
        if (this.pools.get(url) === created) this.pools.delete(url);
        void this.retire(created);
      });
      if (this.pools.size >= this.maxPools) {
        const [oldestUrl, oldest] = this.pools.entries().next().value as [string, pg.Pool];
        this.pools.delete(oldestUrl);
        this.evictions += 1;
        void this.retire(oldest);
      }
    }
    this.pools.set(url, pool);
    return pool;
  }

  /** `withTenantTransaction` on the tenant's pool. */
  async withTenantTransaction<T>(
    tenantId: string | number | bigint | undefined,
    fn: (tx: TenantTransaction) => Promise<T> | T,
    options: TenantTransactionOptions = {},
  ): Promise<T> {
    const id = resolveTenantId(tenantId, options.tenancy ?? this.tenancy);
    return this.onPool(id, (pool) => withTenantTransaction(pool, id, fn, { ...this.defaults, ...options }));
  }

  /** `tenantQuery` on the tenant's pool. */
  async tenantQuery<R extends QueryResultRow = any>(
    tenantId: string | number | bigint | undefined,
    query: QueryInput,
    values?: readonly unknown[],
    options: TenantQueryOptions = {},
  ): Promise<QueryResult<R>> {
    const id = resolveTenantId(tenantId, options.tenancy ?? this.tenancy);
    return this.onPool(id, (pool) => tenantQuery<R>(pool, id, query, values, { ...this.defaults, ...options }));
  }

  /**
   * Closes the pool of the tenant's database (after the tenant was deleted or moved): it takes no new
   * work, transactions in flight finish, then its connections close. Resolves when they have. A
   * tenant on the shared database has no pool of its own: nothing happens.
   */
  async closeTenantPool(tenantId: string | number | bigint): Promise<void> {
    const id = resolveTenantId(tenantId, this.tenancy);
    // The database it was served from (after a move the registry already names the new one).
    const url = this.lastUrl.get(id) ?? (await this.options.tenantService.getTenantById(id))?.databaseUrl;
    this.lastUrl.delete(id);
    if (url) await this.closeDatabasePool(url);
  }

  /** Closes the pool of the database at `url`, if one is open, as closeTenantPool does. */
  async closeDatabasePool(url: string): Promise<void> {
    const pool = this.pools.get(url);
    if (!pool) return;
    this.pools.delete(url);
    await this.retire(pool);
  }

  /** Closes every tenant-database pool (not the shared one, which the caller owns). */
  async closeAll(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all([...pools.map((pool) => this.retire(pool)), ...[...this.retiring.values()].map((r) => r.promise), ...this.closing]);
  }

  stats(): TenantDBPoolStats {
    return {
      pools: [...this.pools.entries()].map(([url, pool]) => ({
        database: redactUrl(url),
        total: pool.totalCount,
        idle: pool.idleCount,
        waiting: pool.waitingCount,
      })),
      evictions: this.evictions,
    };
  }

  /**
   * Runs `run` on the tenant's pool, which is not ended while `run` uses it: a pool pushed out by
   * another database's (maxPools) or closed by closeTenantPool meanwhile ends when the last run on it
   * is over, so a run never meets a closed pool.
   */
  private async onPool<T>(id: string, run: (pool: TenantPool) => Promise<T>): Promise<T> {
    // Inside a transaction of this tenant: join it, on its pool, whatever happened to the pools since.
    const open = openTransactionPool(id);
    if (open) return run(open);
    return this.usePool(await this.tenant(id), run);
  }

  /**
   * Runs `run` on the pool of `tenant`'s database whatever its status (administration: moving a
   * suspended tenant's rows), keeping that pool open until `run` is over.
   */
  async usePool<T>(tenant: Tenant, run: (pool: TenantPool) => Promise<T>): Promise<T> {
    const pool = this.pick(tenant);
    if (pool === this.sharedPool) return run(pool);
    const own = pool as pg.Pool;
    this.users.set(own, (this.users.get(own) ?? 0) + 1);
    try {
      await this.verified.get(own);
      return await run(own);
    } finally {
      const left = this.users.get(own)! - 1;
      if (left > 0) this.users.set(own, left);
      else {
        this.users.delete(own);
        const retiring = this.retiring.get(own);
        if (retiring) {
          this.retiring.delete(own);
          void this.end(own).then(retiring.resolve);
        }
      }
    }
  }

  /** Ends `pool` now, or after its last run when it is in use. */
  private retire(pool: pg.Pool): Promise<void> {
    if (!this.users.get(pool)) return this.end(pool);
    let retiring = this.retiring.get(pool);
    if (!retiring) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.retiring.set(pool, (retiring = { promise, resolve }));
    }
    return retiring.promise;
  }

  private async tenant(tenantId: string | number | bigint | undefined): Promise<Tenant> {
    const id = resolveTenantId(tenantId, this.tenancy);
    const tenant = await this.options.tenantService.getTenantById(id);
    if (!tenant) throw new TenantNotFoundError();
    if (tenant.status !== 'active') throw new TenantSuspendedError();
    return tenant;
  }

  private end(pool: pg.Pool): Promise<void> {
    const ending = pool.end().catch(() => undefined);
    this.closing.add(ending);
    void ending.finally(() => this.closing.delete(ending));
    return ending;
  }
}

/**
 * A tenant database's URL must connect as a role that RLS applies to: a superuser or BYPASSRLS role
 * there (as the login role too, or one it can SET ROLE to) would turn isolation off for every tenant
 * on that database. Checked once per pool, before its first use; a refused pool refuses every use.
 */
async function verify(pool: pg.Pool, url: string): Promise<void> {
  const reason = await rlsBypassReason(pool);
  if (reason) throw new TenancyConfigError(`the database URL ${redactUrl(url)} is refused: ${reason}`);
}
