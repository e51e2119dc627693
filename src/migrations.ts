import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { applyMigrations, connect } from '@databases/pg-migrations';
import type { MigrationFile } from './policies.js';
import { appendAfterExisting } from './migration-numbering.js';

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
 * Files are first numbered after the database's applied migrations (`existing` of generateRlsSql):
 * a file applied before keeps its number, a new one (a table added to the config, or a migration
 * of a newer version of this library) comes after them all.
 */
export async function migrateFiles(
  options: Omit<MigrateOptions, 'directory'> & { readonly files: readonly MigrationFile[] },
): Promise<MigrateResult> {
  const directory = await mkdtemp(join(tmpdir(), 'lbmt-migrations-'));
  try {
    const files = appendAfterExisting(options.files, await appliedMigrationNames(options.databaseUrl));
    for (const file of files) await writeFile(join(directory, file.name), file.sql);
    return await migrate({ ...options, directory });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Names of the migrations @databases/pg-migrations has applied to the database (none when it never ran there). */
export async function appliedMigrationNames(databaseUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT to_regclass('atdatabases_migrations_applied') IS NOT NULL AS migrated`);
    if (!rows[0]?.migrated) return [];
    const applied = await client.query<{ name: string }>('SELECT name FROM atdatabases_migrations_applied WHERE NOT obsolete ORDER BY index');
    return applied.rows.map((row) => row.name);
  } finally {
    await client.end();
  }
}
