import { createHash } from 'node:crypto';
import { connectClient } from './client-hygiene.js';
import type { TenantClient, TenantPool } from './pool.js';

/**
 * Plan classes: which tenants may share the cached plans of a prepared statement (prepare 'tenant',
 * the default).
 *
 * Under the RLS policy the planner folds `current_setting('app.tenant_id')` into its estimates, so a
 * plan is made for the tenant current when it was made. PostgreSQL estimates a tenant's share of a
 * table from the most-common-values (MCV) list of the tenant column: a listed tenant with its own
 * frequency, every other tenant with one and the same frequency. `linkbay.planner_tenants()`
 * (sql/00001-tenants.sql) returns those frequencies. A tenant's class is, for every isolated table,
 * the power of two its estimated frequency falls in: tenants outside the lists are one class (their
 * estimates are identical), listed tenants join the class of tenants estimated within 2× of them.
 * A class is a suffix of the statement name, so a cached plan serves only tenants whose estimates
 * are alike: a 30% tenant never runs a plan made for a 0.07% one, and 50 tenants of similar size
 * share one statement rather than fill the connection's statement cache.
 *
 * The frequencies change when tables are analyzed: they are read again every
 * `PLAN_CLASS_REFRESH_MS`, in the background. A change in who is in which class renames every
 * class, so no statement keeps a plan made under the old assignment. Between an ANALYZE and the next
 * refresh a tenant whose estimate moved runs in its old class, and a plan that class re-plans then
 * may be made for it (PostgreSQL re-plans cached statements after ANALYZE): at most one refresh
 * interval, and undone by the renaming.
 *
 * When the function is missing (a database migrated without the library's sql/, or by a role that
 * could not create it) or does not answer in `FIRST_LOAD_TIMEOUT_MS`, `classOf` answers undefined
 * and statements fall back to being planned at each execution (`plan_cache_mode =
 * force_custom_plan`), which needs no statistics. Limits: extended statistics (CREATE STATISTICS on
 * the tenant column with another) and settings other than the tenant's are not classes.
 */

/** How often the frequencies are read again, per pool. */
export const PLAN_CLASS_REFRESH_MS = 15_000;
/** After a failure that may pass (a lost connection, a timeout). */
const RETRY_AFTER_ERROR_MS = 5_000;
/** The first statements on a pool wait this long for the frequencies, then fall back for now. */
export const FIRST_LOAD_TIMEOUT_MS = 2_000;

interface Classes {
  /** Class suffix of each tenant listed somewhere, or null: unknown (fall back to custom plans). */
  readonly listed: ReadonlyMap<string, string> | null;
  /** Class suffix of every other tenant. */
  readonly common: string;
}

const UNKNOWN: Classes = { listed: null, common: '' };

interface Entry {
  classes: Classes | undefined;
  /** When to read the frequencies again (ms since epoch). */
  refreshAt: number;
  loading: Promise<void> | undefined;
}

const byPool = new WeakMap<object, Entry>();

/**
 * The plan class of `tenantId` on `pool`: a suffix for statement names, or undefined when statements
 * must be planned at each execution instead. Synchronous once the pool's classes are known; the
 * first call for a pool waits for them (one query on a pool connection, at most
 * FIRST_LOAD_TIMEOUT_MS).
 */
export function classOf(pool: TenantPool, tenantId: string): string | undefined | Promise<string | undefined> {
  let entry = byPool.get(pool);
  if (!entry) {
    entry = { classes: undefined, refreshAt: 0, loading: undefined };
    byPool.set(pool, entry);
  }
  if (entry.loading === undefined && Date.now() >= entry.refreshAt) startLoad(pool, entry);
  if (entry.classes === undefined) {
    const known = entry;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, FIRST_LOAD_TIMEOUT_MS);
      timer.unref?.();
    });
    return Promise.race([entry.loading!, timeout]).then(() => {
      clearTimeout(timer);
      // Too slow: custom plans until the load ends, rather than every caller waiting again.
      known.classes ??= UNKNOWN;
      return name(known.classes, tenantId);
    });
  }
  return name(entry.classes, tenantId);
}

/** Forgets what is known of `pool` (tests; after a bulk load and ANALYZE, to use new statistics now). */
export function forgetPlanClasses(pool: TenantPool): void {
  byPool.delete(pool);
}

function name(classes: Classes, tenantId: string): string | undefined {
  if (classes.listed === null) return undefined;
  return classes.listed.get(tenantId) ?? classes.common;
}

function startLoad(pool: TenantPool, entry: Entry): void {
  const loading = load(pool).then(
    (classes) => {
      entry.classes = classes;
      entry.refreshAt = Date.now() + PLAN_CLASS_REFRESH_MS;
    },
    (error: unknown) => {
      const code = (error as { code?: unknown } | null | undefined)?.code;
      // No function (not migrated), no schema, or not allowed: it will not appear by itself soon.
      const lasting = code === '42883' || code === '3F000' || code === '42501';
      // After a passing failure keep the classes we had: still the best knowledge.
      if (lasting || entry.classes === undefined) entry.classes = UNKNOWN;
      entry.refreshAt = Date.now() + (lasting ? PLAN_CLASS_REFRESH_MS : RETRY_AFTER_ERROR_MS);
    },
  );
  entry.loading = loading;
  void loading.finally(() => {
    if (entry.loading === loading) entry.loading = undefined;
  });
}

interface FrequencyRow {
  relation: string;
  tenant: string | null;
  frequency: number;
}

async function load(pool: TenantPool): Promise<Classes> {
  const client: TenantClient = await connectClient(pool);
  // A backend killed while we wait must not be an unhandled 'error' event.
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken = error;
  };
  client.on?.('error', onError);
  try {
    const { rows } = (await client.query('SELECT relation, tenant, frequency FROM linkbay.planner_tenants()')) as { rows: FrequencyRow[] };
    return classify(rows);
  } catch (error) {
    const code = (error as { code?: unknown } | null | undefined)?.code;
    // An error about the query (a cancelled statement too) leaves the connection usable; a lost or
    // shut-down one (08xxx, 57Pxx) does not.
    if (typeof code !== 'string' || code.startsWith('08') || code.startsWith('57P')) broken ??= error as Error;
    throw error;
  } finally {
    client.removeListener?.('error', onError);
    client.release(broken);
  }
}

/** Classes from the estimated frequencies: per relation, the power of two each tenant's falls in. */
export function classify(rows: readonly FrequencyRow[]): Classes {
  const relations = [...new Set(rows.map((r) => r.relation))].sort();
  const common = new Map<string, number>();
  const listed = new Map<string, Map<string, number>>();
  for (const row of rows) {
    if (row.tenant === null) common.set(row.relation, row.frequency);
    else {
      let frequencies = listed.get(row.tenant);
      if (!frequencies) listed.set(row.tenant, (frequencies = new Map()));
      frequencies.set(row.relation, row.frequency);
    }
  }
  const key = (frequencies: ReadonlyMap<string, number> | undefined) =>
    relations.map((relation) => bucket(frequencies?.get(relation) ?? common.get(relation) ?? 0)).join(',');
  const commonKey = key(undefined);
  const keys = new Map<string, string>();
  for (const [tenant, frequencies] of listed) {
    const k = key(frequencies);
    if (k !== commonKey) keys.set(tenant, k);
  }
  // The assignment's digest is in every class name: when anyone changes class, every name changes.
  const assignment = digest([commonKey, ...[...keys].map(([t, k]) => `${t}=${k}`).sort()].join('\n'), 6);
  const suffix = (k: string) => `${assignment}_${digest(k, 8)}`;
  const suffixes = new Map<string, string>();
  for (const [tenant, k] of keys) suffixes.set(tenant, suffix(k));
  return { listed: suffixes, common: suffix(commonKey) };
}

/** floor(log2(frequency)): estimates within the same power of two share a class. */
function bucket(frequency: number): string {
  return frequency > 0 && Number.isFinite(frequency) ? String(Math.floor(Math.log2(frequency))) : 'none';
}

function digest(text: string, length: number): string {
  return createHash('sha1').update(text).digest('hex').slice(0, length);
}
