import pg from 'pg';
import { qualifiedName, quoteIdent, type TenancyConfig } from './config.js';
import { checkTenantDatabaseUrl } from './database-url.js';
import type { TenantDBPool } from './db-pool.js';
import { OnboardingError, TenancyConfigError, TenantError, TenantInputError, type OnboardingStep } from './errors.js';
import { tenantMigrationUrl } from './fleet-migrations.js';
import { migrate, migrateFiles } from './migrations.js';
import type { MigrationFile } from './policies.js';
import type { Tenant } from './tenants.js';
import { withTenantTransaction, type TenantTransaction } from './transaction.js';

/** How a tenant's own database is created (for a tenant created with a `databaseUrl`). */
export interface TenantDatabaseProvisioning {
  /**
   * A role that may create and drop databases (CREATEDB, or a superuser), and the database it
   * connects to for that (e.g. `postgres://provisioner:pw@any-host/postgres`). Host and port are
   * taken from the tenant's `databaseUrl`: the database is created on the server the URL names.
   */
  readonly adminUrl: string;
  /**
   * `CREATE DATABASE ... TEMPLATE <template>`: a copy of a database already migrated (and seeded
   * with reference data), much faster than running every migration. It must have no connections
   * while it is copied. Default: none (template1, then the migrations).
   */
  readonly template?: string;
  /** Owner of the new database. Default: the `adminUrl` user. */
  readonly owner?: string;
}

/** What a seed hook gets: the tenant, and a transaction as the tenant through its own pool. */
export interface SeedContext {
  readonly tenant: Tenant;
  /** `withTenantTransaction` on the tenant's pool (its database, or the shared one), whatever its status. Needs `onboarding.pools`. */
  withTenantTransaction<T>(fn: (tx: TenantTransaction) => Promise<T> | T): Promise<T>;
}

/**
 * The onboarding of a new tenant, as ordered steps: the registry row (status `provisioning`) → its
 * database created (a tenant with a `databaseUrl`, when `database` is set) → `migrations` run on it →
 * the `seed` hook → a health check through the tenant's own path (a tenant transaction as the app
 * role on the tenant's pool, when `pools` is set) → `active`. A failure at any step undoes the
 * earlier ones in reverse and throws OnboardingError naming the step.
 */
export interface OnboardingOptions {
  /** Create the database of a tenant that has a `databaseUrl`. Default: it must exist already. */
  readonly database?: TenantDatabaseProvisioning;
  /** Migrations for a tenant's own database: a directory of `NNNNN-name.sql`, or generated files (generateRlsSql). */
  readonly migrations?: { readonly directory: string } | { readonly files: readonly MigrationFile[] };
  /**
   * The URL that migrates the tenant database whose registry URL is `tenantUrl`. Default
   * `tenantMigrationUrl(tenantUrl, database.adminUrl)`: the tenant's database as the provisioning role.
   */
  readonly migrationUrl?: (tenantUrl: string) => string;
  /**
   * Roles the migrations may create besides the tenancy's roles and the URL's user: dropped again
   * when the onboarding fails, if they did not exist before it.
   */
  readonly roles?: readonly string[];
  /** Seed data: run after the migrations. A throw fails the `seed` step. */
  readonly seed?: (context: SeedContext) => Promise<void> | void;
  /** Pools for the seed's transactions and the health check (the tenant's own path). */
  readonly pools?: TenantDBPool;
  /**
   * Checks of your own inside the health check's transaction (read only, as the tenant, as the app
   * role). A throw fails the `health-check` step. The library's own checks run first: the tenant
   * setting is the tenant's, and row level security applies to every configured table.
   */
  readonly healthCheck?: (tx: TenantTransaction, tenant: Tenant) => Promise<void> | void;
  /**
   * The database of the tenant's server where onboardings take turns (a session advisory lock,
   * which PostgreSQL scopes to one database, while roles are the whole server's) and where the
   * roles the migrations create are looked at and dropped on a failure. Every onboarding on one
   * server must use the same one. Default: `database.adminUrl`'s database when `database` is set,
   * else `postgres` (reached with `migrationUrl`'s credentials).
   */
  readonly lockDatabase?: string;
}

/** What the onboarding asks of the registry (TenantAdminService). */
export interface OnboardingRegistry {
  /** provisioning → active, with its audit row, in one transaction. */
  activate(tenant: Tenant): Promise<Tenant>;
  /** Removes the tenant's rows from the shared database's tenant tables (seed undone). */
  purgeRows(tenant: Tenant): Promise<void>;
  /**
   * Deletes the registry row, with its audit row (the failed step), in one transaction; when undo
   * steps failed (`undoFailed`, so something of the tenant may be left) marks it `deleted` instead,
   * the audit row naming them: its id is then never reused.
   */
  remove(tenant: Tenant, step: OnboardingStep, error: unknown, undoFailed: readonly OnboardingStep[]): Promise<void>;
}

/** 'lbmt' + 'onbd': onboardings on one server take turns (in `lockDatabase`), so the roles one creates are its own. */
const ONBOARDING_LOCK_KEY = 0x6c626d746f6e6264n;
const DATABASE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$/;

/** Checks the options once (TenancyConfigError naming the option). */
export function checkOnboardingOptions(options: OnboardingOptions | undefined): void {
  if (!options) return;
  if (options.database !== undefined && typeof options.database?.adminUrl !== 'string') throw new TenancyConfigError('`onboarding.database.adminUrl` must be a postgres:// URL');
  if (options.migrations && !options.migrationUrl && !options.database) {
    throw new TenancyConfigError('`onboarding.migrations` needs `onboarding.migrationUrl` or `onboarding.database` (whose adminUrl migrates)');
  }
  if (options.lockDatabase !== undefined && (typeof options.lockDatabase !== 'string' || !DATABASE_NAME.test(options.lockDatabase))) {
    throw new TenancyConfigError('`onboarding.lockDatabase` must be a database name (1 to 63 letters, digits, _, $ or -)');
  }
  for (const key of ['seed', 'healthCheck', 'migrationUrl'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') throw new TenancyConfigError(`\`onboarding.${key}\` must be a function`);
  }
}

/** Whether a tenant created now has steps to run after its registry row (else it is active at once). */
export function hasOnboardingSteps(options: OnboardingOptions | undefined, databaseUrl: string | null | undefined): boolean {
  if (!options) return false;
  const own = typeof databaseUrl === 'string';
  return !!options.seed || !!options.pools || (own && (!!options.database || !!options.migrations));
}

/** Runs the steps after the registry row; on a failure undoes them and throws OnboardingError. */
export async function runOnboarding(tenant: Tenant, options: OnboardingOptions, tenancy: TenancyConfig, registry: OnboardingRegistry): Promise<Tenant> {
  const undo: Array<{ step: OnboardingStep; run: () => Promise<void> }> = [];
  let step: OnboardingStep = 'database';
  let server: pg.Client | undefined;
  const url = tenant.databaseUrl;
  try {
    // A connection to the tenant's server, held for the whole onboarding: the advisory lock makes
    // onboardings on one server take turns, so the roles that appear meanwhile are this one's.
    const serverUrl = url ? serverConnectionUrl(url, options) : undefined;
    if (serverUrl) {
      const client = new pg.Client({ connectionString: serverUrl });
      client.on('error', () => undefined); // a dead connection fails the next query
      await client.connect().catch((error: unknown) => {
        // The default (`postgres`) may not exist (3D000), or the role may not connect to it (42501:
        // no CONNECT; 28000: pg_hba.conf): say what to set. Anything else (the server down) as it is.
        const code = (error as { code?: unknown } | null)?.code;
        if (code !== '3D000' && code !== '42501' && code !== '28000') throw error;
        const lockDatabase = decodeURIComponent(new URL(serverUrl).pathname.slice(1));
        throw new TenantError(
          'LBMT_CONFIG_INVALID',
          `cannot connect to the database ${lockDatabase} of the tenant's server, where onboardings take turns (SQLSTATE ${code}): set \`onboarding.lockDatabase\` to a database its role may connect to`,
          500,
          true,
          { cause: error },
        );
      });
      server = client;
      await server.query('SELECT pg_advisory_lock($1::bigint)', [ONBOARDING_LOCK_KEY.toString()]);
    }
    const candidates = url ? roleCandidates(url, tenancy, options) : [];
    const rolesBefore = server ? await existingRoles(server, candidates) : new Set<string>();

    if (url && options.database) {
      const name = databaseName(url);
      const found = await server!.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [name]);
      // Never adopted: a database this onboarding did not create is not dropped by its undo.
      if (found.rowCount) throw new TenancyConfigError(`the database ${name} exists already; onboarding creates it`);
      const template = options.database.template ? ` TEMPLATE ${quoteIdent(options.database.template)}` : '';
      const owner = options.database.owner ? ` OWNER ${quoteIdent(options.database.owner)}` : '';
      await server!.query(`CREATE DATABASE ${quoteIdent(name)}${template}${owner}`);
      undo.push({ step: 'database', run: () => dropDatabase(server!, name, url, options.pools) });
    }

    step = 'migrations';
    if (url && server) {
      // Roles the migrations create (the generated roles file, roles of your own) are dropped on a
      // failure, after the database (their privileges live in it).
      undo.splice(0, 0, { step: 'migrations', run: () => dropNewRoles(server!, candidates, rolesBefore) });
    }
    if (url && options.migrations) {
      const migrationUrl = options.migrationUrl ? options.migrationUrl(url) : tenantMigrationUrl(url, options.database!.adminUrl);
      if ('directory' in options.migrations) await migrate({ databaseUrl: migrationUrl, directory: options.migrations.directory });
      else await migrateFiles({ databaseUrl: migrationUrl, files: options.migrations.files });
    }

    step = 'seed';
    if (!url) undo.push({ step: 'seed', run: () => registry.purgeRows(tenant) });
    if (options.seed) {
      const context: SeedContext = {
        tenant,
        withTenantTransaction: (fn) => {
          if (!options.pools) throw new TenancyConfigError('the seed hook needs `onboarding.pools` for its tenant transactions');
          return options.pools.usePool(tenant, (pool) => withTenantTransaction(pool, tenant.id, fn, { tenancy }));
        },
      };
      await options.seed(context);
    }

    step = 'health-check';
    await healthCheck(tenant, options, tenancy);

    step = 'activate';
    const active = await registry.activate(tenant);
    await release(server);
    return active;
  } catch (error) {
    const failures: Array<{ step: OnboardingStep; error: unknown }> = [];
    // In reverse: the database (and the roles), then the seeded rows, then the registry row.
    for (const { step: undone, run } of undo.reverse()) {
      try {
        await run();
      } catch (undoError) {
        failures.push({ step: undone, error: undoError });
      }
    }
    try {
      await registry.remove(tenant, step, error, failures.map((f) => f.step));
    } catch (undoError) {
      failures.push({ step: 'registry', error: undoError });
    }
    await release(server);
    // 502: a database the onboarding depends on refused or failed (a SQLSTATE, a connection error
    // code) in a step of the library's own; a seed hook's own SQL error is the hook's (500). 422: the
    // input (a databaseUrl on another server).
    const upstream = step !== 'seed' && !(error instanceof TenantError) && typeof (error as { code?: unknown } | null)?.code === 'string';
    throw new OnboardingError(step, failures, { cause: error, status: error instanceof TenantInputError ? 422 : upstream ? 502 : 500 });
  }
}

/** The library's health check: a read-only tenant transaction on the tenant's own pool, as the app role. */
async function healthCheck(tenant: Tenant, options: OnboardingOptions, tenancy: TenancyConfig): Promise<void> {
  if (!options.pools) {
    // No pools to check through: at least the URL must be one the app may use (no RLS bypass).
    if (tenant.databaseUrl) {
      const reason = await checkTenantDatabaseUrl(tenant.databaseUrl);
      if (reason) throw new TenancyConfigError(`the tenant's databaseUrl is refused: ${reason}`);
    }
    return;
  }
  await options.pools.usePool(tenant, (pool) =>
    withTenantTransaction(
      pool,
      tenant.id,
      async (tx) => {
        const { rows } = await tx.query('SELECT pg_catalog.current_setting($1, true) AS tenant', [tenancy.setting]);
        if (rows[0]?.tenant !== tenant.id) throw new TenancyConfigError('the health check did not see its own tenant setting');
        for (const table of tenancy.tables) {
          // Reads the table (privileges, the migrations ran) and asks whether RLS applies to this role on it.
          const checked = await tx.query(`SELECT pg_catalog.row_security_active($1::regclass) AS on, EXISTS (SELECT 1 FROM ${qualifiedName(table)}) AS seen`, [qualifiedName(table)]);
          if (!checked.rows[0]?.on) throw new TenancyConfigError(`row level security does not apply to the app role on ${table.schema}.${table.table}`);
        }
        await options.healthCheck?.(tx, tenant);
      },
      { tenancy, readOnly: true },
    ),
  );
}

/**
 * The tenant's server with the provisioning role (or the migration role), in the database where
 * onboardings take turns (`lockDatabase`): not the tenant's own, or two onboardings into two
 * databases of one server would not exclude each other and one's undo could drop a role the
 * other's migrations had just created.
 */
function serverConnectionUrl(tenantUrl: string, options: OnboardingOptions): string | undefined {
  const url = serverRoleUrl(tenantUrl, options);
  const lockDatabase = options.lockDatabase ?? (options.database ? undefined : 'postgres');
  if (!url || lockDatabase === undefined) return url;
  const moved = new URL(url);
  moved.pathname = `/${encodeURIComponent(lockDatabase)}`;
  return moved.toString();
}

function serverRoleUrl(tenantUrl: string, options: OnboardingOptions): string | undefined {
  if (options.database) {
    const tenant = new URL(tenantUrl);
    const url = new URL(options.database.adminUrl);
    // The provisioning credentials go to adminUrl's server only: a databaseUrl (from an admin
    // request) naming another host would have them sent there (a server may ask for the password
    // in clear text). Databases on other servers are provisioned with an onboarding of their own.
    if (tenant.hostname.toLowerCase() !== url.hostname.toLowerCase() || (tenant.port || '5432') !== (url.port || '5432')) {
      throw new TenantInputError('`databaseUrl` must name the server onboarding provisions on (the host and port of `onboarding.database.adminUrl`)');
    }
    return url.toString();
  }
  // An existing database: the migration role, to see (and undo) the roles its migrations create.
  if (options.migrations && options.migrationUrl) return options.migrationUrl(tenantUrl);
  return undefined;
}

function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!DATABASE_NAME.test(name)) throw new TenancyConfigError('the database name of `databaseUrl` must be 1 to 63 letters, digits, _, $ or -');
  return name;
}

function roleCandidates(url: string, tenancy: TenancyConfig, options: OnboardingOptions): string[] {
  const user = decodeURIComponent(new URL(url).username);
  return [...new Set([...Object.values(tenancy.roles), ...(user ? [user] : []), ...(options.roles ?? [])])];
}

async function existingRoles(server: pg.Client, names: readonly string[]): Promise<Set<string>> {
  const { rows } = await server.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)', [names]);
  return new Set(rows.map((row) => row.rolname));
}

async function dropDatabase(server: pg.Client, name: string, url: string, pools: TenantDBPool | undefined): Promise<void> {
  await pools?.closeDatabasePool(url).catch(() => undefined);
  // FORCE (PostgreSQL 13+): connections still open to it (a pool being drained) are ended.
  await server.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

async function dropNewRoles(server: pg.Client, candidates: readonly string[], before: ReadonlySet<string>): Promise<void> {
  const now = await existingRoles(server, candidates);
  for (const role of candidates) if (now.has(role) && !before.has(role)) await server.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`);
}

async function release(server: pg.Client | undefined): Promise<void> {
  if (!server) return;
  // Ending the session releases the advisory lock too.
  await server.end().catch(() => undefined);
}
