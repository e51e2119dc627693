import { createHash, randomBytes } from 'node:crypto';
import { quoteIdent, type TenancyConfig } from '../config.js';
import type { MigrationFile } from '../policies.js';
import type { Queryable } from '../pool.js';
import type { StrategySpec } from '../resolution.js';
import { TenantUnauthenticatedError } from './errors.js';

/** Prefix of every key this module makes: recognisable in logs and by secret scanners. */
export const API_KEY_PREFIX = 'lbk_';
const KEY = /^lbk_[A-Za-z0-9_-]{43}$/;

/**
 * The migration creating `linkbay.api_keys` (sha256 of each key, never the key) and
 * `linkbay.tenant_for_api_key(bytea)`: a SECURITY DEFINER function (search_path pinned) that
 * returns only the tenant id of a live key, so the app role resolves keys without reading the table
 * and without a bypass role. Append it to your migrations; `name` is yours to number.
 *
 * @example
 * const files = [...generateRlsSql(tenancy), apiKeysSql(tenancy, { name: '00010-linkbay-api-keys.sql' })];
 */
export function apiKeysSql(tenancy: TenancyConfig, options: { name?: string } = {}): MigrationFile {
  const name = options.name ?? '90001-linkbay-api-keys.sql';
  if (!/^\d{5}-[a-z0-9-]+\.sql$/.test(name)) throw new TypeError('`name` must look like "00010-linkbay-api-keys.sql"');
  const app = quoteIdent(tenancy.roles.app);
  const admin = quoteIdent(tenancy.roles.admin);
  const type = tenancy.tenantIdType;
  return {
    name,
    sql: `-- linkbay-multitenant: API keys of tenants, stored as SHA-256 digests (apiKeysSql).
CREATE SCHEMA IF NOT EXISTS linkbay;

CREATE TABLE IF NOT EXISTS linkbay.api_keys (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   ${type} NOT NULL REFERENCES linkbay.tenants (id) ON DELETE CASCADE,
  key_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(key_sha256) = 32),
  label       text NULL CHECK (length(label) <= 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz NULL
);
CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON linkbay.api_keys (tenant_id);

-- The app role reads no key: it may only ask which tenant a digest belongs to.
REVOKE ALL ON linkbay.api_keys FROM PUBLIC;
REVOKE ALL ON linkbay.api_keys FROM ${app};
GRANT SELECT, INSERT, UPDATE, DELETE ON linkbay.api_keys TO ${admin};

CREATE OR REPLACE FUNCTION linkbay.tenant_for_api_key(key_sha256 bytea) RETURNS ${type}
  LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
  SELECT k.tenant_id FROM linkbay.api_keys AS k WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL
$body$;
REVOKE ALL ON FUNCTION linkbay.tenant_for_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION linkbay.tenant_for_api_key(bytea) TO ${app};
`,
  };
}

/** The SHA-256 digest stored for `key`. */
export function apiKeyDigest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/**
 * Makes an API key for `tenantId` (as the admin role: `pool` must be able to insert into
 * linkbay.api_keys). The key is returned once and never stored: keep it, or make another.
 *
 * @example
 * const { id, key } = await createApiKey(adminPool, tenant.id, { label: 'CI' }); // key: lbk_...
 */
export async function createApiKey(pool: Queryable, tenantId: string, options: { label?: string } = {}): Promise<{ id: string; key: string }> {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  const { rows } = await pool.query('INSERT INTO linkbay.api_keys (tenant_id, key_sha256, label) VALUES ($1, $2, $3) RETURNING id::text AS id', [
    tenantId,
    apiKeyDigest(key),
    options.label ?? null,
  ]);
  return { id: rows[0].id as string, key };
}

/** Revokes a key by its id (as the admin role); resolves with whether a live key was revoked. */
export async function revokeApiKey(pool: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await pool.query('UPDATE linkbay.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
  return (rowCount ?? 0) > 0;
}

export interface ApiKeyTenantOptions {
  /** A pool as the app role: one call of linkbay.tenant_for_api_key per request with a key. */
  readonly pool: Queryable;
  /** The header carrying the key. Default `X-API-Key`. */
  readonly header?: string;
  /** Strategy name in resolution events. Default `api-key`. */
  readonly name?: string;
}

/**
 * A resolution strategy that reads the tenant of an API key: the key's SHA-256 digest is looked up
 * by `linkbay.tenant_for_api_key` (apiKeysSql). A request without the header names no tenant here;
 * one with a malformed, unknown or revoked key is TenantUnauthenticatedError (401), and resolution
 * stops: it never falls through to another strategy.
 *
 * @example
 * const core = createMultitenant({ tenantService, strategies: [apiKeyTenant({ pool: appPool })] });
 */
export function apiKeyTenant(options: ApiKeyTenantOptions): StrategySpec {
  if (!options?.pool || typeof options.pool.query !== 'function') throw new TypeError('`pool` must be a pg.Pool as the app role');
  const header = options.header ?? 'X-API-Key';
  if (!/^[A-Za-z0-9-]+$/.test(header)) throw new TypeError('`header` must be a header name');
  // No registered scheme exists for API keys; this one names the header to send.
  const challenge = `ApiKey header="${header}"`;
  return {
    name: options.name ?? 'api-key',
    custom: async (request) => {
      const key = request.header(header);
      if (key === undefined) return undefined;
      // Checked before hashing: a malformed key costs no round trip.
      if (!KEY.test(key)) throw new TenantUnauthenticatedError('the API key is not valid', challenge);
      const { rows } = await options.pool.query('SELECT linkbay.tenant_for_api_key($1)::text AS tenant_id', [apiKeyDigest(key)]);
      const tenantId = rows[0]?.tenant_id as string | null | undefined;
      if (!tenantId) throw new TenantUnauthenticatedError('the API key is not valid', challenge);
      return { by: 'id', value: tenantId };
    },
  };
}
