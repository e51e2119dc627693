import { createHash } from 'node:crypto';
import type { TenancyConfig } from './config.js';
import type { TenantPool } from './client-hygiene.js';

/**
 * Plan classes: which tenants may share a cached plan of a prepared statement (prepare 'tenant',
 * the default).
 *
 * Under the RLS policy the planner folds `current_setting('app.tenant_id')` into its estimates, so a
 * plan is made for the tenant that was current when it was made. PostgreSQL estimates a tenant's
 * share of a table from the most-common-values (MCV) list of the tenant column: a tenant in the list
 * gets its own estimate; every other tenant gets one and the same estimate. So tenants outside the
 * lists can share a plan (each would be given that very plan), and each tenant in a list needs its
 * own. A class is a suffix of the statement name: one class for all the tenants outside the lists,
 * one per listed tenant. The lists come from `linkbay.planner_tenants()` (sql/00001-tenants.sql), a
 * function the app role may call; pg_stats itself hides them from roles under RLS.
 *
 * The lists change when tables are analyzed: they are read again every `PLAN_CLASS_REFRESH_MS`, in
 * the background, and the class names carry a digest of the lists, so a change renames every class
 * and no statement keeps a plan made under the old lists. Until then a tenant that has just entered
 * a list shares the common class: its plans are the ones its previous estimate gave it.
 *
 * When the function is missing (a database migrated without the library's sql/) or cannot be called,
 * `classOf` answers undefined and statements fall back to being planned at every execution
 * (`plan_cache_mode = force_custom_plan`), which needs no statistics.
 */

/** How often the MCV lists are read again, per pool. */
export const PLAN_CLASS_REFRESH_MS = 60_000;
/** After a failure other than "no such function / not allowed" (e.g. a lost connection). */
const RETRY_AFTER_ERROR_MS = 5_000;

interface Classes {
  /** Tenants in an MCV list, or null when the lists cannot be read (fall back to custom plans). */
  readonly listed: ReadonlySet<string> | null;
  /** Digest of the lists: part of every class name. */
  readonly digest: string;
}

interface Entry {
  classes: Classes | undefined;
  /** When to read the lists again (ms since epoch). */
  refreshAt: number;
  loading: Promise<void> | undefined;
}

const byPool = new WeakMap<object, Entry>();

/**
 * The plan class of `tenantId` on `pool`: a suffix for statement names, or undefined when statements
 * must be planned at each execution instead. Synchronous once the pool's lists are known; the first
 * call for a pool waits for them (one query, on a pool connection).
 */
export function classOf(pool: TenantPool, tenancy: TenancyConfig, tenantId: string): string | undefined | Promise<string | undefined> {
  let entry = byPool.get(pool);
  if (!entry) {
    entry = { classes: undefined, refreshAt: 0, loading: undefined };
    byPool.set(pool, entry);
  }
  if (entry.loading === undefined && Date.now() >= entry.refreshAt) entry.loading = load(pool, tenancy, entry);
  if (entry.classes === undefined) {
    const known = entry;
    return entry.loading!.then(() => name(known.classes!, tenantId));
  }
  return name(entry.classes, tenantId);
}

/** Forgets what is known of `pool` (tests; after a bulk load and ANALYZE, to use the new lists now). */
export function forgetPlanClasses(pool: TenantPool): void {
  byPool.delete(pool);
}

function name(classes: Classes, tenantId: string): string | undefined {
  if (classes.listed === null) return undefined;
  return classes.listed.has(tenantId) ? `${classes.digest}_${digest(tenantId, 10)}` : classes.digest;
}

async function load(pool: TenantPool, tenancy: TenancyConfig, entry: Entry): Promise<void> {
  const columns = [...new Set([tenancy.tenantColumn, ...tenancy.tables.map((t) => t.tenantColumn)])];
  try {
    const client = await pool.connect();
    try {
      const { rows } = (await client.query('SELECT linkbay.planner_tenants($1::text[]) AS id', [columns])) as { rows: Array<{ id: string }> };
      client.release();
      const listed = rows.map((r) => r.id).sort();
      entry.classes = { listed: new Set(listed), digest: digest(listed.join('\n'), 6) };
      entry.refreshAt = Date.now() + PLAN_CLASS_REFRESH_MS;
    } catch (error) {
      // An SQL error (it has a code) leaves the connection usable; anything else may not have.
      client.release((error as { code?: string }).code ? undefined : (error as Error));
      throw error;
    }
  } catch (error) {
    const code = (error as { code?: string }).code;
    // No function (not migrated, or an older schema), no schema, or not allowed: it will not appear
    // by itself soon; anything else (a lost connection) is retried sooner.
    const lasting = code === '42883' || code === '3F000' || code === '42501';
    // Keep the lists we had after a passing failure: they are still the best knowledge.
    if (lasting || entry.classes === undefined) entry.classes = { listed: null, digest: '' };
    entry.refreshAt = Date.now() + (lasting ? PLAN_CLASS_REFRESH_MS : RETRY_AFTER_ERROR_MS);
  } finally {
    entry.loading = undefined;
  }
}

function digest(text: string, length: number): string {
  return createHash('sha1').update(text).digest('hex').slice(0, length);
}
