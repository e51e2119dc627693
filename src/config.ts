import { TenancyConfigError } from './errors.js';
import { TENANT_ID_TYPES, type TenantIdType } from './tenant-id.js';

/** A table whose rows belong to tenants. */
export interface TenantTable {
  /** `schema.table` (lower-case identifiers as PostgreSQL stores them); the schema defaults to `public`. */
  readonly schema: string;
  readonly table: string;
  /** Column holding the tenant id. Default: the config's `tenantColumn` (`tenant_id`). */
  readonly tenantColumn: string;
}

export interface TenancyRoles {
  /** Owns the tables and runs migrations. Subject to RLS because tables are FORCEd. */
  readonly owner: string;
  /** The runtime role of the application: LOGIN, no BYPASSRLS, owns nothing. */
  readonly app: string;
  /** Cross-tenant administration (exports, moves): BYPASSRLS, used only through an explicit admin pool. */
  readonly admin: string;
}

/**
 * How the isolation policy reads the setting.
 * - `bare`: `tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid`. The planner sees
 *   the STABLE call as an index condition and estimates with the current value, so a tenant holding
 *   30% of the rows gets its own (index) plan — as long as the statement is planned for it, which
 *   the default `prepare: 'tenant'` ensures. Default; see bench/RESULTS.md for the measurement.
 * - `initplan`: `tenant_id = (SELECT NULLIF(...)::uuid)`. Evaluated once per statement as an
 *   InitPlan, which some linters ask for, but the planner no longer sees the value.
 */
export type PolicyForm = 'bare' | 'initplan';

/**
 * Where the tables live. `postgres` (default): one server, RESTRICTIVE isolation policy.
 * `citus`: a Citus cluster; tenant tables are distributed by their tenant column and isolated by a
 * single PERMISSIVE policy, the tenant is set with SET LOCAL in an explicit transaction (docs/citus.md).
 */
export type Engine = 'postgres' | 'citus';

export interface TenancyConfig {
  /** Custom setting carrying the tenant id. Default `app.tenant_id`. */
  readonly setting: string;
  /** Default `uuid`. */
  readonly tenantIdType: TenantIdType;
  /** Default tenant column for tables that do not name one. Default `tenant_id`. */
  readonly tenantColumn: string;
  readonly roles: TenancyRoles;
  readonly tables: readonly TenantTable[];
  /** Default `bare`. */
  readonly policyForm: PolicyForm;
  /** Default `postgres`. */
  readonly engine: Engine;
  /**
   * Tables that are not tenant data and are shared by all tenants (plans, currencies), as
   * `schema.table`. doctor counts them as classified; on Citus they are made reference tables.
   * Default none.
   */
  readonly globalTables: readonly string[];
  /** Tables that are neither (migration bookkeeping, queues), each with the reason. Default none. */
  readonly exemptTables: readonly ExemptTable[];
}

export interface TenantTableInput {
  name: string;
  tenantColumn?: string;
}

export interface TenancyInput {
  setting?: string;
  tenantIdType?: TenantIdType;
  tenantColumn?: string;
  roles?: Partial<TenancyRoles>;
  tables?: ReadonlyArray<TenantTableInput | string>;
  policyForm?: PolicyForm;
  engine?: Engine;
  globalTables?: readonly string[];
  exemptTables?: ReadonlyArray<{ name: string; reason: string }>;
}

export interface ExemptTable {
  /** `schema.table`. */
  readonly name: string;
  readonly reason: string;
}

const DEFAULTS = {
  setting: 'app.tenant_id',
  tenantIdType: 'uuid',
  tenantColumn: 'tenant_id',
  roles: { owner: 'app_owner', app: 'app_user', admin: 'app_admin' },
  policyForm: 'bare',
  engine: 'postgres',
} as const;

// PostgreSQL's unquoted identifier syntax, limited to lower case so that the names in the config
// are exactly the names in pg_catalog (no quoting surprises, no case folding).
const IDENTIFIER = /^[a-z_][a-z0-9_$]{0,62}$/;
// A custom setting must be qualified (`prefix.name`), or PostgreSQL refuses to set it.
const SETTING = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;
const KNOWN_KEYS = new Set(['setting', 'tenantIdType', 'tenantColumn', 'roles', 'tables', 'policyForm', 'engine', 'globalTables', 'exemptTables', '$schema']);

/**
 * Validates a tenancy configuration, fills in defaults and returns it deeply frozen.
 * Throws TenancyConfigError naming the offending option.
 *
 * @example
 * const tenancy = defineTenancy({ tables: ['orders', { name: 'billing.invoices', tenantColumn: 'org_id' }] });
 * tenancy.setting // 'app.tenant_id'
 */
export function defineTenancy(input: TenancyInput = {}): TenancyConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new TenancyConfigError('tenancy config must be an object');
  }
  for (const key of Object.keys(input)) {
    if (!KNOWN_KEYS.has(key)) throw new TenancyConfigError(`unknown option \`${key}\``);
  }
  const setting = input.setting ?? DEFAULTS.setting;
  if (typeof setting !== 'string' || !SETTING.test(setting)) {
    throw new TenancyConfigError('`setting` must be a qualified custom setting name such as "app.tenant_id"');
  }
  const tenantIdType = input.tenantIdType ?? DEFAULTS.tenantIdType;
  if (!TENANT_ID_TYPES.includes(tenantIdType)) {
    throw new TenancyConfigError(`\`tenantIdType\` must be one of ${TENANT_ID_TYPES.join(', ')}`);
  }
  const tenantColumn = identifier(input.tenantColumn ?? DEFAULTS.tenantColumn, '`tenantColumn`');
  const policyForm = input.policyForm ?? DEFAULTS.policyForm;
  if (policyForm !== 'bare' && policyForm !== 'initplan') {
    throw new TenancyConfigError('`policyForm` must be "bare" or "initplan"');
  }
  const engine = input.engine ?? DEFAULTS.engine;
  if (engine !== 'postgres' && engine !== 'citus') throw new TenancyConfigError('`engine` must be "postgres" or "citus"');
  const roles = parseRoles(input.roles);
  const tables = parseTables(input.tables ?? [], tenantColumn);
  const globalTables = parseGlobalTables(input.globalTables ?? [], tables);
  const exemptTables = parseExemptTables(input.exemptTables ?? [], tables, globalTables);
  return deepFreeze({ setting, tenantIdType, tenantColumn, roles, tables, policyForm, engine, globalTables, exemptTables });
}

function parseRoles(input: Partial<TenancyRoles> | undefined): TenancyRoles {
  if (input !== undefined && (input === null || typeof input !== 'object')) {
    throw new TenancyConfigError('`roles` must be an object');
  }
  const roles = { ...DEFAULTS.roles, ...input };
  for (const key of Object.keys(roles)) {
    if (!(key in DEFAULTS.roles)) throw new TenancyConfigError(`unknown option \`roles.${key}\``);
    identifier(roles[key as keyof TenancyRoles], `\`roles.${key}\``);
  }
  if (new Set([roles.owner, roles.app, roles.admin]).size !== 3) {
    throw new TenancyConfigError('`roles.owner`, `roles.app` and `roles.admin` must be three different roles');
  }
  return roles;
}

function parseTables(input: unknown, defaultColumn: string): TenantTable[] {
  if (!Array.isArray(input)) throw new TenancyConfigError('`tables` must be an array');
  const seen = new Set<string>();
  return input.map((entry: unknown, i) => {
    const where = `\`tables[${i}]\``;
    const spec = typeof entry === 'string' ? { name: entry } : entry;
    if (spec === null || typeof spec !== 'object' || typeof (spec as TenantTableInput).name !== 'string') {
      throw new TenancyConfigError(`${where} must be a table name or { name, tenantColumn? }`);
    }
    const { name, tenantColumn } = spec as TenantTableInput;
    for (const key of Object.keys(spec)) {
      if (key !== 'name' && key !== 'tenantColumn') throw new TenancyConfigError(`unknown option \`tables[${i}].${key}\``);
    }
    const parts = name.split('.');
    if (parts.length > 2) throw new TenancyConfigError(`${where}.name must be "table" or "schema.table"`);
    const schema = identifier(parts.length === 2 ? parts[0] : 'public', `${where}.name`);
    const table = identifier(parts.at(-1), `${where}.name`);
    const key = `${schema}.${table}`;
    if (seen.has(key)) throw new TenancyConfigError(`${where}: table ${key} is listed twice`);
    seen.add(key);
    return { schema, table, tenantColumn: identifier(tenantColumn ?? defaultColumn, `${where}.tenantColumn`) };
  });
}

function parseGlobalTables(input: unknown, tables: readonly TenantTable[]): string[] {
  if (!Array.isArray(input)) throw new TenancyConfigError('`globalTables` must be an array');
  const tenant = new Set(tables.map((t) => `${t.schema}.${t.table}`));
  return input.map((name: unknown, i) => {
    const where = `\`globalTables[${i}]\``;
    if (typeof name !== 'string') throw new TenancyConfigError(`${where} must be a table name`);
    const key = tableKey(name, where);
    if (tenant.has(key)) throw new TenancyConfigError(`${where}: ${key} is a tenant table`);
    return key;
  });
}

/** `table` or `schema.table` → `schema.table` (schema `public` by default). */
function tableKey(name: string, where: string): string {
  const parts = name.split('.');
  if (parts.length > 2) throw new TenancyConfigError(`${where} must be "table" or "schema.table"`);
  return `${identifier(parts.length === 2 ? parts[0] : 'public', where)}.${identifier(parts.at(-1), where)}`;
}

function parseExemptTables(input: unknown, tables: readonly TenantTable[], globalTables: readonly string[]): ExemptTable[] {
  if (!Array.isArray(input)) throw new TenancyConfigError('`exemptTables` must be an array of { name, reason }');
  const taken = new Set([...tables.map((t) => `${t.schema}.${t.table}`), ...globalTables]);
  return input.map((entry: unknown, i) => {
    const at = `exemptTables[${i}]`;
    const { name, reason, ...rest } = (entry ?? {}) as { name?: unknown; reason?: unknown };
    if (typeof name !== 'string') throw new TenancyConfigError(`\`${at}.name\` must be a table name`);
    if (Object.keys(rest).length) throw new TenancyConfigError(`\`${at}\`: unknown key ${Object.keys(rest)[0]}`);
    if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 500) {
      throw new TenancyConfigError(`\`${at}.reason\` must say why the table is neither tenant data nor global (1 to 500 characters)`);
    }
    const key = tableKey(name, `\`${at}.name\``);
    if (taken.has(key)) throw new TenancyConfigError(`\`${at}\`: ${key} is already a tenant or global table`);
    return { name: key, reason };
  });
}

function identifier(value: unknown, option: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new TenancyConfigError(`${option} must be a lower-case SQL identifier ([a-z_][a-z0-9_$]*, at most 63 characters)`);
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** `"schema"."table"`, the qualified name for SQL. Identifiers are already validated. */
export function qualifiedName(table: Pick<TenantTable, 'schema' | 'table'>): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.table)}`;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The config every function uses when none is given. */
export const DEFAULT_TENANCY: TenancyConfig = defineTenancy();
