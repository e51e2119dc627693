import pg from 'pg';
import type { Queryable } from './pool.js';

/**
 * Database URLs checked to connect as a role row level security applies to, before a tenant's
 * transactions are sent through them (and shown without their secrets: src/redact-url.ts).
 */

export { redactUrl } from './redact-url.js';

/**
 * The roles that bypass row level security which this session is, or can become: its current and
 * its session user (the login role: `options=-c role=app_user` changes only the current one, and a
 * `RESET ROLE` goes back), and any superuser or BYPASSRLS role either is a member of (`SET ROLE`).
 * Empty when RLS applies to every role the session can act as.
 */
export async function bypassingRoles(session: Queryable): Promise<string[]> {
  const { rows } = await session.query(
    `SELECT r.rolname::text AS name
       FROM pg_catalog.pg_roles r
      WHERE (r.rolsuper OR r.rolbypassrls)
        AND (pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') OR pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
      ORDER BY 1`,
  );
  return rows.map((row: { name: string }) => row.name);
}

/** Why a tenant database URL is refused, or undefined when it is fine. */
export async function rlsBypassReason(session: Queryable): Promise<string | undefined> {
  const roles = await bypassingRoles(session);
  if (roles.length === 0) return undefined;
  const shown = roles.slice(0, 3).join(', ') + (roles.length > 3 ? ', ...' : '');
  return `it connects as, or can become, a role that bypasses row level security (${shown}); use the app role`;
}

/**
 * Connects to `url` once and returns why it must not serve tenants (see rlsBypassReason), or
 * undefined. Connection failures are thrown as they are.
 */
export async function checkTenantDatabaseUrl(url: string, options: { connectionTimeoutMillis?: number } = {}): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000 });
  client.on('error', () => undefined); // reported by connect() or query()
  await client.connect();
  try {
    return await rlsBypassReason(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
