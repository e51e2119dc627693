import pg from 'pg';
import { migrate, type MigrateOptions } from './migrations.js';
import { redactUrl } from './redact-url.js';

/**
 * Migrations across the fleet: the shared database, then every tenant database of its registry.
 * Bounded concurrency, the advisory lock of `migrate` on each database, a progress event per
 * database, one outcome per database (applied, already current, failed with the error, skipped),
 * and a staged rollout: a canary group first, the rest only when all of it succeeded.
 */
export interface MigrateAllOptions extends Omit<MigrateOptions, 'databaseUrl'> {
  /**
   * The shared database as the migrating role (the owner or a superuser). Its registry names the
   * tenant databases; by default its user, password and query parameters are used on each of them.
   */
  readonly databaseUrl: string;
  /** How many tenant databases to migrate at once. Default 4. */
  readonly concurrency?: number;
  /**
   * The URL that migrates the tenant database whose registry `database_url` is `tenantUrl`. The
   * registry holds app-role URLs (the admin API refuses others), which cannot run DDL. Default
   * `tenantMigrationUrl(tenantUrl, databaseUrl)`: the tenant URL's host, port and database with
   * `databaseUrl`'s user, password and query parameters.
   */
  readonly tenantMigrationUrl?: (tenantUrl: string) => string;
  /**
   * Servers (`host:port`), besides `databaseUrl`'s own, that the default `tenantMigrationUrl` may
   * send `databaseUrl`'s credentials to. Default none. A registry URL on another server is reported as failed, not
   * connected to: whoever may set a tenant's database URL (the admin API) must not be able to have
   * the migrator's password sent to a server of their choosing. A custom `tenantMigrationUrl`
   * decides for itself.
   */
  readonly servers?: readonly string[];
  /**
   * Staged rollout: the first `canary` tenant databases (in the registry's URL order) are migrated
   * first; the others only when every canary succeeded (else they are `skipped`). Default 0.
   */
  readonly canary?: number;
  /** After the first failure start no other database (those not started are `skipped`). Default false. */
  readonly stopOnFailure?: boolean;
  /** Called as each database ends, in the order they end. */
  readonly onProgress?: (progress: FleetProgress) => void;
}

export type FleetOutcome = { database: string; status: 'applied' | 'current'; applied: string[] } | { database: string; status: 'failed'; error: Error } | { database: string; status: 'skipped' };

export interface FleetProgress {
  readonly result: FleetOutcome;
  /** Databases ended so far, the shared one included, and how many there are. */
  readonly done: number;
  readonly total: number;
  readonly failed: number;
}

export interface MigrateAllResult {
  /** One entry per database, named by its migration URL without the password: the shared database first. */
  readonly results: FleetOutcome[];
  /** Whether every database was migrated (none failed, none skipped). */
  readonly ok: boolean;
}

/**
 * The URL to migrate a tenant database with: host, port and database of `tenantUrl` (a registry
 * `database_url`), user, password and query parameters of `migratorUrl`.
 *
 * @example
 * tenantMigrationUrl('postgres://app_user:pw@db-eu-2:5432/tenants_eu', 'postgres://migrator:secret@db-main/app?sslmode=require')
 * // 'postgres://migrator:secret@db-eu-2:5432/tenants_eu?sslmode=require'
 */
export function tenantMigrationUrl(tenantUrl: string, migratorUrl: string): string {
  const tenant = new URL(tenantUrl);
  const url = new URL(migratorUrl);
  url.hostname = tenant.hostname;
  url.port = tenant.port;
  url.pathname = tenant.pathname;
  return url.toString();
}

/** `host:port` of a URL (port 5432 when none), host in lower case. */
function serverOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname.toLowerCase()}:${parsed.port || '5432'}`;
}

function normaliseServer(server: string): string {
  if (typeof server !== 'string' || !/^[^\s:/@]+(:\d{1,5})?$/.test(server)) throw new TypeError('`servers` must be host or host:port strings');
  return serverOf(`postgres://${server}`);
}

/** Which database a URL reaches: server and database name (users and parameters aside). */
function databaseKey(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname.toLowerCase()}:${parsed.port || '5432'}${decodeURIComponent(parsed.pathname)}`;
}

/**
 * Races between databases of one server over what is cluster-wide (roles: the generated roles file
 * creates and alters them): the losing migration is rolled back by PostgreSQL and safe to run again.
 */
function clusterRace(error: unknown): boolean {
  const e = error as { code?: string; message?: string; constraint?: string };
  return (e.code === 'XX000' && /tuple concurrently (updated|deleted)/.test(e.message ?? '')) || (e.code === '23505' && /^pg_(authid|auth_members)_/.test(e.constraint ?? '')) || e.code === '40001' || e.code === '40P01';
}

/** Tries of one database's migration lost to a race over cluster-wide catalogs (roles). */
const RACE_ATTEMPTS = 10;

async function migrateOne(options: MigrateOptions): Promise<string[]> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return (await migrate(options)).applied;
    } catch (error) {
      if (attempt >= RACE_ATTEMPTS || !clusterRace(error)) throw error;
      // Back off with jitter, so that the databases racing for the same role stop meeting.
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 25 * 2 ** attempt) * (0.5 + Math.random())));
    }
  }
}

/**
 * Applies the directory to the shared database, then to every tenant database in the registry
 * (distinct `database_url`s of tenants that are not deleted), each reached through the migration
 * URL derived from it (`tenantMigrationUrl`). Each database is migrated once, however many registry
 * URLs name it (other users, other parameters), and never twice at once (`migrate` holds an advisory
 * lock). A failing tenant database does not stop the others unless `stopOnFailure`; a re-run after a
 * fix applies only what is missing, so it finishes the rest. When the shared database fails,
 * nothing else is tried.
 */
export async function migrateAllTenants(options: MigrateAllOptions): Promise<MigrateAllResult> {
  const { databaseUrl, concurrency = 4, tenantMigrationUrl: derive, canary = 0, stopOnFailure = false, onProgress, servers, ...rest } = options;
  const allowed = new Set([serverOf(databaseUrl), ...(servers ?? []).map((server) => normaliseServer(server))]);
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new TypeError('`concurrency` must be a positive integer');
  if (!Number.isSafeInteger(canary) || canary < 0) throw new TypeError('`canary` must be a non-negative integer');
  const results: FleetOutcome[] = [];
  let total = 1;
  let failed = 0;
  const record = (result: FleetOutcome) => {
    results.push(result);
    if (result.status === 'failed') failed += 1;
    onProgress?.({ result, done: results.length, total, failed });
  };
  const outcome = (database: string, applied: string[]): FleetOutcome => ({ database, status: applied.length ? 'applied' : 'current', applied });

  let shared: FleetOutcome;
  try {
    shared = outcome(redactUrl(databaseUrl), await migrateOne({ ...rest, databaseUrl }));
  } catch (error) {
    record({ database: redactUrl(databaseUrl), status: 'failed', error: error as Error });
    return { results, ok: false };
  }
  // The registry is read once the shared database is migrated (a first run creates it).
  const targets: string[] = [];
  const unusable: FleetOutcome[] = [];
  const seen = new Set([databaseKey(databaseUrl)]);
  for (const tenantUrl of await registryUrls(databaseUrl)) {
    try {
      if (!derive && !allowed.has(serverOf(tenantUrl))) {
        throw new Error(`its server ${serverOf(tenantUrl)} is not among the servers the migrator's credentials may be sent to (\`servers\`, --server ${serverOf(tenantUrl)}); not connected`);
      }
      const url = derive ? derive(tenantUrl) : tenantMigrationUrl(tenantUrl, databaseUrl);
      if (seen.has(databaseKey(url))) continue;
      seen.add(databaseKey(url));
      targets.push(url);
    } catch (error) {
      unusable.push({ database: redactUrl(tenantUrl), status: 'failed', error: error instanceof Error ? error : new Error(String(error)) });
    }
  }
  total = 1 + unusable.length + targets.length;
  record(shared);
  for (const result of unusable) record(result);

  const run = async (urls: string[]) => {
    let next = 0;
    const worker = async () => {
      while (next < urls.length) {
        const url = urls[next++]!;
        if (stopOnFailure && failed > 0) {
          record({ database: redactUrl(url), status: 'skipped' });
          continue;
        }
        try {
          record(outcome(redactUrl(url), await migrateOne({ ...rest, databaseUrl: url })));
        } catch (error) {
          record({ database: redactUrl(url), status: 'failed', error: error as Error });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, urls.length)) }, worker));
  };
  const canaries = targets.slice(0, canary);
  await run(canaries);
  const others = targets.slice(canaries.length);
  if (canaries.some((url) => results.some((r) => r.status === 'failed' && r.database === redactUrl(url)))) {
    for (const url of others) record({ database: redactUrl(url), status: 'skipped' });
  } else {
    await run(others);
  }
  return { results, ok: results.every((r) => r.status === 'applied' || r.status === 'current') };
}

async function registryUrls(databaseUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ database_url: string }>(
      `SELECT DISTINCT database_url FROM linkbay.tenants
        WHERE database_url IS NOT NULL AND status <> 'deleted' ORDER BY database_url`,
    );
    return rows.map((row) => row.database_url);
  } finally {
    await client.end();
  }
}
