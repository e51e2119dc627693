import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { applyMigrations, connect } from '@databases/pg-migrations';
import type { MigrationFile } from './policies.js';
import { redactUrl } from './database-url.js';

export interface MigrateOptions {
  /** A URL of a role that may run the migrations (usually the owner role or a superuser). */
  readonly databaseUrl: string;
  /** Directory of `NNNNN-name.sql` files. */
  readonly directory: string;
  /**
   * Key of the session advisory lock held while migrating. Default: a constant of this library,
   * so every instance of every app that uses it on one database waits for the others.
   */
  readonly lockKey?: bigint;
  /** Called with the name of each migration as it is applied. */
  readonly onApplied?: (name: string) => void;
}

export interface MigrateResult {
  /** Migrations applied by this run (empty when another run had already applied them). */
  readonly applied: string[];
  /** Milliseconds spent waiting for another instance's migration to finish. */
  readonly waitedMs: number;
}

/** 'lbmt' + 'migr' as a 64-bit key; any constant works as long as every instance uses the same. */
export const MIGRATION_LOCK_KEY = 0x6c626d746d696772n;

/**
 * Applies a directory of migrations with @databases/pg-migrations while holding a session-level
 * `pg_advisory_lock`. @databases/pg-migrations takes no lock of its own, so two app instances
 * migrating at boot would both try to apply migration N; here the second waits, then finds
 * everything applied and does nothing.
 *
 * @example
 * await migrate({ databaseUrl: process.env.MIGRATION_DATABASE_URL!, directory: 'migrations' });
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const lockKey = options.lockKey ?? MIGRATION_LOCK_KEY;
  // The lock lives on its own connection: @databases/pg runs the migrations on a pool of its own,
  // and a session lock is released only by this connection's unlock or its end.
  const lockClient = new pg.Client({ connectionString: options.databaseUrl });
  await lockClient.connect();
  const applied: string[] = [];
  try {
    const started = performance.now();
    await lockClient.query('SELECT pg_advisory_lock($1::bigint)', [lockKey.toString()]);
    const waitedMs = performance.now() - started;
    const connection = connect({ connectionString: options.databaseUrl, poolSize: 1, bigIntMode: 'bigint' });
    try {
      await applyMigrations({
        connection,
        migrationsDirectory: options.directory,
        afterOperation: async (operation) => {
          if (operation.kind === 'apply') {
            applied.push(operation.value.name);
            options.onApplied?.(operation.value.name);
          }
        },
      });
    } finally {
      await connection.dispose();
    }
    return { applied, waitedMs };
  } finally {
    // Ending the session releases the lock even if the unlock cannot be sent.
    await lockClient.query('SELECT pg_advisory_unlock($1::bigint)', [lockKey.toString()]).catch(() => undefined);
    await lockClient.end().catch(() => undefined);
  }
}

/**
 * Applies generated migration files (from generateRlsSql) without writing them to your tree:
 * they are written to a temporary directory, applied with `migrate`, and the directory is removed.
 */
export async function migrateFiles(
  options: Omit<MigrateOptions, 'directory'> & { readonly files: readonly MigrationFile[] },
): Promise<MigrateResult> {
  const directory = await mkdtemp(join(tmpdir(), 'lbmt-migrations-'));
  try {
    for (const file of options.files) await writeFile(join(directory, file.name), file.sql);
    return await migrate({ ...options, directory });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export interface MigrateAllOptions extends Omit<MigrateOptions, 'databaseUrl'> {
  /**
   * The shared database as the migrating role (the owner or a superuser). Its registry names the
   * tenant databases; by default its user, password and query parameters are used on each of them.
   */
  readonly databaseUrl: string;
  /** How many database servers to migrate at once (the databases of one server go one by one). Default 4. */
  readonly concurrency?: number;
  /**
   * The URL that migrates the tenant database whose registry `database_url` is `tenantUrl`. The
   * registry holds app-role URLs (the admin API refuses others), which cannot run DDL. Default
   * `tenantMigrationUrl(tenantUrl, databaseUrl)`: the tenant URL's host, port and database with
   * `databaseUrl`'s user, password and query parameters.
   */
  readonly tenantMigrationUrl?: (tenantUrl: string) => string;
}

export interface MigrateAllResult {
  /** One entry per database, named by its migration URL without the password. */
  readonly results: Array<{ database: string; applied: string[] } | { database: string; error: Error }>;
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

/** Which server a URL reaches: host and port. */
function serverKey(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname.toLowerCase()}:${parsed.port || '5432'}`;
}

/** Which database a URL reaches: server and database name (users and parameters aside). */
function databaseKey(url: string): string {
  return `${serverKey(url)}${decodeURIComponent(new URL(url).pathname)}`;
}

/**
 * Applies the directory to the shared database, then to every tenant database in the registry
 * (distinct `database_url`s of tenants that are not deleted), each reached through the migration URL
 * derived from it (see `tenantMigrationUrl` above). Each database is migrated once, however many
 * registry URLs name it (other users, other parameters) and also when one names the shared
 * database: never twice at once (@databases/pg-migrations takes no lock of its own; `migrate` holds
 * an advisory lock besides). The databases of one server are migrated one after another, since
 * migrations that change roles (cluster-wide, like the generated roles file) fail with "tuple
 * concurrently updated" when run on two databases of a server at once; `concurrency` servers are
 * migrated in parallel. A failing tenant database does not stop the others; the result lists each
 * database with what was applied or the error, URLs without their password.
 */
export async function migrateAllTenants(options: MigrateAllOptions): Promise<MigrateAllResult> {
  const { databaseUrl, concurrency = 4, tenantMigrationUrl: derive, ...rest } = options;
  const results: MigrateAllResult['results'] = [];
  const shared = await migrate({ ...rest, databaseUrl });
  results.push({ database: redactUrl(databaseUrl), applied: shared.applied });
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  let tenantUrls: string[];
  try {
    const { rows } = await client.query<{ database_url: string }>(
      `SELECT DISTINCT database_url FROM linkbay.tenants
        WHERE database_url IS NOT NULL AND status <> 'deleted' ORDER BY database_url`,
    );
    tenantUrls = rows.map((row) => row.database_url);
  } finally {
    await client.end();
  }
  const seen = new Set([databaseKey(databaseUrl)]);
  // The tenant databases by server: one server's databases are migrated in sequence.
  const servers = new Map<string, string[]>();
  for (const tenantUrl of tenantUrls) {
    let url: string;
    try {
      url = derive ? derive(tenantUrl) : tenantMigrationUrl(tenantUrl, databaseUrl);
      const key = databaseKey(url);
      if (seen.has(key)) continue;
      seen.add(key);
    } catch (error) {
      results.push({ database: redactUrl(tenantUrl), error: error instanceof Error ? error : new Error(String(error)) });
      continue;
    }
    const server = servers.get(serverKey(url)) ?? [];
    servers.set(serverKey(url), [...server, url]);
  }
  const queue = [...servers.values()];
  const worker = async () => {
    for (let urls = queue.shift(); urls; urls = queue.shift()) {
      for (const url of urls) {
        try {
          const result = await migrate({ ...rest, databaseUrl: url });
          results.push({ database: redactUrl(url), applied: result.applied });
        } catch (error) {
          results.push({ database: redactUrl(url), error: error as Error });
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return { results };
}
