-- linkbay-multitenant: Citus mode. Generated; edit the config, not this file. Idempotent.
-- Needs the citus extension in this database (CREATE EXTENSION citus, on every node).
CREATE SCHEMA IF NOT EXISTS linkbay;

-- SET LOCAL reaches the workers only with this setting, for the role the application logs in as.
ALTER ROLE "app_user" SET citus.propagate_set_commands = 'local';

-- The tenant of the current transaction, set the way Citus propagates to the shards: SET LOCAL
-- inside an explicit transaction block. A bind parameter is kept (%L quotes the value). It refuses to
-- run where the setting would stay on the coordinator, so a tenant transaction fails closed.
-- No SET clause (a function's SET would scope SET LOCAL to the call); not SECURITY DEFINER, and the
-- names it calls are in pg_catalog, which is searched first.
CREATE OR REPLACE FUNCTION linkbay.set_tenant(tenant text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF tenant IS NULL OR tenant = '' THEN
    RAISE EXCEPTION 'linkbay.set_tenant: no tenant given' USING ERRCODE = 'LBM01';
  END IF;
  IF current_setting('citus.propagate_set_commands', true) IS DISTINCT FROM 'local' THEN
    RAISE EXCEPTION 'linkbay.set_tenant: citus.propagate_set_commands is not local for %, the tenant would not reach the workers', current_user
      USING ERRCODE = 'LBM01';
  END IF;
  EXECUTE format('SET LOCAL app.tenant_id = %L', tenant::uuid::text);
  RETURN current_setting('app.tenant_id');
END
$$;
ALTER FUNCTION linkbay.set_tenant(text) OWNER TO "app_owner";
REVOKE ALL ON FUNCTION linkbay.set_tenant(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA linkbay TO "app_user";
GRANT EXECUTE ON FUNCTION linkbay.set_tenant(text) TO "app_user";

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
