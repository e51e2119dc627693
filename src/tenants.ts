import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { SLUG, tryCanonicalTenantId } from './tenant-id.js';
import type { Queryable } from './pool.js';
export type { Queryable } from './pool.js';

/**
 * Where a tenant is in its lifecycle: `provisioning` (its onboarding runs) → `active` ↔ `suspended`
 * → `deleted` (then purged). Every status but `active` is refused by requests.
 */
export type TenantStatus = 'provisioning' | 'active' | 'suspended' | 'deleted';

/** Every status, in lifecycle order. */
export const TENANT_STATUSES: readonly TenantStatus[] = ['provisioning', 'active', 'suspended', 'deleted'];

/** A row of the tenants registry (`linkbay.tenants`). */
export interface Tenant {
  /** Canonical tenant id. */
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly domain: string | null;
  readonly status: TenantStatus;
  /** The tenant's own database, or null when its rows live in the shared database under RLS. */
  readonly databaseUrl: string | null;
  readonly plan: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/**
 * Where tenants are looked up (the seed's TenantServiceProtocol). Arguments are already
 * canonical: ids canonicalised for the tenant id type, hosts and slugs lower-case. `undefined`
 * means "no such tenant".
 */
export interface TenantService {
  getTenantById(id: string): Promise<Tenant | undefined>;
  getTenantByDomain(domain: string): Promise<Tenant | undefined>;
  getTenantBySubdomain(subdomain: string): Promise<Tenant | undefined>;
  getTenantDatabaseUrl?(id: string): Promise<string | undefined>;
}


/** The registry columns a Tenant is read from (see toTenant). */
export const TENANT_COLUMNS = `id::text AS id, slug, name, domain, status, database_url, plan, metadata, created_at, updated_at`;

// A slug that is not a DNS label (SLUG) or a malformed domain names no tenant and is not looked up.
const DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

/**
 * TenantService over the registry table the generated migrations create. Reads only: the app role
 * may SELECT the registry; changes go through the admin role (TenantAdminService).
 *
 * @example
 * const tenants = new PgTenantService(appPool, { tenancy });
 * const acme = await tenants.getTenantBySubdomain('acme');
 */
export class PgTenantService implements TenantService {
  private readonly table: string;
  private readonly tenancy: TenancyConfig;

  constructor(
    private readonly db: Queryable,
    options: { tenancy?: TenancyConfig; table?: string } = {},
  ) {
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    this.table = options.table ?? 'linkbay.tenants';
    if (!/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/.test(this.table)) throw new TypeError('`table` must be "schema.table" in lower case');
  }

  async getTenantById(id: string): Promise<Tenant | undefined> {
    const canonical = tryCanonicalTenantId(id, this.tenancy.tenantIdType);
    if (canonical === undefined) return undefined;
    return this.one(`SELECT ${TENANT_COLUMNS} FROM ${this.table} WHERE id = $1`, canonical);
  }

  async getTenantByDomain(domain: string): Promise<Tenant | undefined> {
    if (!DOMAIN.test(domain)) return undefined;
    return this.one(`SELECT ${TENANT_COLUMNS} FROM ${this.table} WHERE domain = $1`, domain);
  }

  async getTenantBySubdomain(subdomain: string): Promise<Tenant | undefined> {
    if (!SLUG.test(subdomain)) return undefined;
    return this.one(`SELECT ${TENANT_COLUMNS} FROM ${this.table} WHERE slug = $1`, subdomain);
  }

  async getTenantDatabaseUrl(id: string): Promise<string | undefined> {
    return (await this.getTenantById(id))?.databaseUrl ?? undefined;
  }

  private async one(text: string, value: string): Promise<Tenant | undefined> {
    const { rows } = await this.db.query(text, [value]);
    return rows[0] ? toTenant(rows[0]) : undefined;
  }
}

/** Maps a registry row (snake_case columns) to a frozen Tenant. */
export function toTenant(row: Record<string, any>): Tenant {
  return Object.freeze({
    id: String(row.id),
    slug: row.slug,
    name: row.name,
    domain: row.domain ?? null,
    status: row.status,
    databaseUrl: row.database_url ?? null,
    plan: row.plan ?? 'default',
    metadata: Object.freeze({ ...(row.metadata ?? {}) }),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
}
