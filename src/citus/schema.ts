/**
 * The generated SQL in Citus mode (`engine: 'citus'`). What differs from the vanilla schema, and why
 * (verified on Citus 13.2.2, docs/citus.md):
 *
 * - Citus deparses policies for its shards without their `AS RESTRICTIVE` flag, and only the shards'
 *   policies are enforced for distributed queries. The vanilla pair (RESTRICTIVE isolation +
 *   PERMISSIVE `USING (true)`) becomes two permissive policies on the shards, OR-ed: it fails open.
 *   So each tenant table gets ONE permissive isolation policy with USING and WITH CHECK, and no
 *   other permissive policy (doctor reports any other one).
 * - `set_config(..., true)` is not propagated to the workers; `SET LOCAL` is, inside an explicit
 *   transaction, when the role has `citus.propagate_set_commands = 'local'`. `linkbay.set_tenant($1)`
 *   issues that SET LOCAL with a bind parameter and refuses to run when it would not propagate.
 * - Tenant tables are distributed by their tenant column and colocated with the first one (so joins
 *   on the tenant column stay on one node); the registry and `globalTables` are reference tables.
 * - Reference tables cannot keep ordinary triggers: the registry's updated_at trigger is dropped (the
 *   admin service sets updated_at itself) and the change notification fires on the coordinator only.
 */
import { qualifiedName, quoteIdent, quoteLiteral, type TenancyConfig, type TenantTable } from '../config.js';
import { ISOLATION_POLICY, ACCESS_POLICY, currentTenantExpression, tenantIndexSql } from '../policies.js';

/** The helper that sets the tenant on Citus: `SELECT linkbay.set_tenant($1)`. */
export const SET_TENANT_FUNCTION = 'linkbay.set_tenant';
/** SQLSTATE raised by set_tenant when the setting would not reach the workers. */
export const SET_TENANT_REFUSED_SQLSTATE = 'LBM01';

/** Roles, set_tenant and (with the registry) the registry as a reference table. */
export function citusSetupSql(config: TenancyConfig, includeRegistry: boolean): string {
  const { app, owner } = config.roles;
  const registry = includeRegistry
    ? `
-- The registry is read by every node's queries that join it: a reference table (a copy on every
-- node). Reference tables keep no ordinary trigger: updated_at is set by the admin service instead,
-- and the change notification is created with citus.enable_unsafe_triggers and fires on the
-- coordinator only (where the application LISTENs; the workers' copies stay silent).
DROP TRIGGER IF EXISTS tenants_touch_updated_at ON linkbay.tenants;
CREATE OR REPLACE FUNCTION linkbay.notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
  payload jsonb;
BEGIN
  IF NOT citus_is_coordinator() THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    payload := jsonb_build_object('op', TG_OP, 'id', OLD.id::text, 'slugs', jsonb_build_array(OLD.slug), 'domains', jsonb_build_array(OLD.domain));
  ELSIF TG_OP = 'INSERT' THEN
    payload := jsonb_build_object('op', TG_OP, 'id', NEW.id::text, 'slugs', jsonb_build_array(NEW.slug), 'domains', jsonb_build_array(NEW.domain));
  ELSE
    payload := jsonb_build_object('op', TG_OP, 'id', NEW.id::text,
      'slugs', jsonb_build_array(OLD.slug, NEW.slug), 'domains', jsonb_build_array(OLD.domain, NEW.domain));
  END IF;
  PERFORM pg_notify('linkbay_tenants', payload::text);
  RETURN NULL;
END
$$;
SET citus.enable_unsafe_triggers = on;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'linkbay.tenants'::regclass AND repmodel = 't') THEN
    PERFORM create_reference_table('linkbay.tenants');
  END IF;
END
$$;
RESET citus.enable_unsafe_triggers;
`
    : '';
  return `-- linkbay-multitenant: Citus mode. Generated; edit the config, not this file. Idempotent.
-- Needs the citus extension in this database (CREATE EXTENSION citus, on every node).
CREATE SCHEMA IF NOT EXISTS linkbay;

-- SET LOCAL reaches the workers only with this setting, for the role the application logs in as.
ALTER ROLE ${quoteIdent(app)} SET citus.propagate_set_commands = 'local';

-- The tenant of the current transaction, set the way Citus propagates to the shards: SET LOCAL
-- inside an explicit transaction block. A bind parameter is kept (%L quotes the value). It refuses to
-- run where the setting would stay on the coordinator, so a tenant transaction fails closed.
-- No SET clause (a function's SET would scope SET LOCAL to the call); not SECURITY DEFINER, and the
-- names it calls are in pg_catalog, which is searched first.
CREATE OR REPLACE FUNCTION ${SET_TENANT_FUNCTION}(tenant text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF tenant IS NULL OR tenant = '' THEN
    RAISE EXCEPTION 'linkbay.set_tenant: no tenant given' USING ERRCODE = '${SET_TENANT_REFUSED_SQLSTATE}';
  END IF;
  IF current_setting('citus.propagate_set_commands', true) IS DISTINCT FROM 'local' THEN
    RAISE EXCEPTION 'linkbay.set_tenant: citus.propagate_set_commands is not local for %, the tenant would not reach the workers', current_user
      USING ERRCODE = '${SET_TENANT_REFUSED_SQLSTATE}';
  END IF;
  EXECUTE format('SET LOCAL ${config.setting} = %L', tenant::${config.tenantIdType}::text);
  RETURN current_setting(${quoteLiteral(config.setting)});
END
$$;
ALTER FUNCTION ${SET_TENANT_FUNCTION}(text) OWNER TO ${quoteIdent(owner)};
REVOKE ALL ON FUNCTION ${SET_TENANT_FUNCTION}(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA linkbay TO ${quoteIdent(app)};
GRANT EXECUTE ON FUNCTION ${SET_TENANT_FUNCTION}(text) TO ${quoteIdent(app)};
${registry}`;
}

/** `globalTables` made reference tables: before the tenant tables, which may reference them. */
export function citusReferenceTablesSql(config: TenancyConfig): string {
  const owner = quoteIdent(config.roles.owner);
  const lines = config.globalTables.map(
    (name) => `  ALTER TABLE ${name.split('.').map(quoteIdent).join('.')} OWNER TO ${owner};
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = ${quoteLiteral(name)}::regclass AND partmethod = 'n' AND repmodel = 't') THEN
    PERFORM create_reference_table(${quoteLiteral(name)});
  END IF;`,
  );
  return `-- linkbay-multitenant: Citus reference tables (global data, a copy on every node). Generated. Idempotent.
-- Owned by the owner role like the tenant tables: Citus's shard splits and moves of a tenant table
-- need its owner to own the tables it references. Grants on them are yours to give.
DO $$
BEGIN
${lines.join('\n')}
END
$$;
`;
}

/** One tenant table: distributed by its tenant column, one permissive isolation policy. */
export function citusTableSql(config: TenancyConfig, t: TenantTable): string {
  const table = qualifiedName(t);
  const column = quoteIdent(t.tenantColumn);
  const current = currentTenantExpression(config);
  const { owner, app, admin } = config.roles;
  const first = config.tables[0]!;
  const colocate = first === t ? 'default' : `${first.schema}.${first.table}`;
  return `-- linkbay-multitenant: Citus row level security for ${t.schema}.${t.table} (distributed by ${t.tenantColumn}, ${config.tenantIdType}).
-- Generated; edit the config, not this file. Idempotent.
ALTER TABLE ${table} OWNER TO ${quoteIdent(owner)};
GRANT USAGE ON SCHEMA ${quoteIdent(t.schema)} TO ${quoteIdent(app)}, ${quoteIdent(admin)};
GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${quoteIdent(app)}, ${quoteIdent(admin)};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${quoteIdent(t.schema)} TO ${quoteIdent(app)}, ${quoteIdent(admin)};

-- Distributed by the tenant column: each tenant's rows on one shard, colocated with the first
-- tenant table so that joins on the tenant column run on one node.
DO $$
BEGIN
  -- A table with a foreign key to a reference table may already be a Citus local table (partmethod
  -- 'n'): distributing it is what is wanted. Already hash-distributed: nothing to do.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = ${quoteLiteral(table)}::regclass AND partmethod = 'h') THEN
    PERFORM create_distributed_table(${quoteLiteral(table)}, ${quoteLiteral(t.tenantColumn)}, colocate_with => ${quoteLiteral(colocate)});
  END IF;
END
$$;

ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE ${table} FORCE ROW LEVEL SECURITY;

-- ONE permissive policy: Citus drops AS RESTRICTIVE on the shards, where a second permissive
-- policy would be OR-ed with this one. NULLIF: no tenant set matches no row. WITH CHECK refuses
-- writes of another tenant's rows, on the shard.
DROP POLICY IF EXISTS ${ACCESS_POLICY} ON ${table};
DROP POLICY IF EXISTS ${ISOLATION_POLICY} ON ${table};
CREATE POLICY ${ISOLATION_POLICY} ON ${table} AS PERMISSIVE FOR ALL TO PUBLIC
  USING (${column} = ${current})
  WITH CHECK (${column} = ${current});

-- An index led by the tenant column, unless one exists (a shard holds many tenants).
${tenantIndexSql(t)}`;
}
