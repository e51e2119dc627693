import { quoteLiteral, type TenancyConfig } from '../config.js';
import { withLease } from '../lease.js';
import type { TenantClient, TenantPool } from '../pool.js';
import { mapDatabaseError } from '../errors.js';

/**
 * Session settings pinned for export and import: they decide the text PostgreSQL writes for dates,
 * intervals, floats and bytea (COPY's output), and how it reads it back. Both ends pin the same, so
 * every value survives the round trip exactly, whatever the servers' or roles' defaults.
 */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
  standard_conforming_strings: 'on',
};

export interface CopySessionOptions {
  readonly readOnly: boolean;
  readonly isolation: 'repeatable read' | 'read committed';
  readonly tenancy: TenancyConfig;
}

/**
 * One transaction as the tenant on a raw client of `pool`, for COPY (which a TenantTransaction
 * cannot stream): BEGIN, the tenant setting and PINNED_SETTINGS as LOCAL settings, `fn`, then COMMIT
 * when `fn` returns `'commit'` and ROLLBACK otherwise (or when it throws). The client goes back to
 * the pool only when its session is clean (src/lease.ts), and is destroyed when anything failed
 * half-way (a COPY cut off leaves the connection in an unknown state).
 */
export async function withCopySession<T>(
  pool: TenantPool,
  tenantId: string,
  options: CopySessionOptions,
  fn: (client: TenantClient) => Promise<{ value: T; commit: boolean }>,
): Promise<T> {
  return withLease(pool, tenantId, false, performance.now(), async (lease) => {
    const { client } = lease;
    const settings = Object.entries(PINNED_SETTINGS)
      .map(([name, value]) => `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, true)`)
      .join('; ');
    try {
      await client.query(
        `BEGIN ISOLATION LEVEL ${options.isolation.toUpperCase()}${options.readOnly ? ' READ ONLY' : ''}; ` +
          `SELECT pg_catalog.set_config(${quoteLiteral(options.tenancy.setting)}, ${quoteLiteral(tenantId)}, true); ${settings}`,
      );
      const { value, commit } = await fn(client);
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
      lease.outcome = commit ? 'commit' : 'rollback';
      return value;
    } catch (error) {
      lease.destroy = { reason: 'not-idle', error };
      throw mapDatabaseError(error);
    }
  });
}
