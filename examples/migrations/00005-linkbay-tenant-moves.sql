-- linkbay-multitenant: durable tenant moves (TenantMoveJobs). Added after 00001-tenants.sql was
-- released: library migrations are append-only, a change is a new file with the next number.
--
-- One row per move. `step` is the last step completed, in order: created, frozen (the tenant's
-- writes are refused), copied (rows on the target, counts and checksums equal), verified (read back
-- through the URL the registry will hold, as the app role), switched (the registry points at the
-- target), invalidated (caches told), cleaned (source rows deleted, or kept with copy_mode).
-- A crashed run leaves its row `running`; any instance resumes it from `step`. Two instances never
-- run one job at once: the runner holds a session advisory lock on the job (released when its
-- connection dies, so a crash frees it), and at most one move per tenant is running (index below).
CREATE TABLE IF NOT EXISTS linkbay.tenant_moves (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Not named like a tenant column (tenant_id): this is registry metadata, not tenant data under RLS.
  moved_tenant_id     uuid NOT NULL REFERENCES linkbay.tenants (id),
  -- The name of the configured target (a request names a target, never a URL).
  target              text NOT NULL CHECK (length(target) BETWEEN 1 AND 200),
  source_database_url text NULL,
  target_database_url text NULL,
  copy_mode           boolean NOT NULL DEFAULT false,
  previous_status     text NOT NULL CHECK (previous_status IN ('active', 'suspended')),
  step                text NOT NULL DEFAULT 'created'
                      CHECK (step IN ('created', 'frozen', 'copied', 'verified', 'switched', 'invalidated', 'cleaned')),
  state               text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'succeeded', 'failed')),
  -- Rows and checksums per table, as exported from the source (set at `copied`).
  counts              jsonb NULL,
  checksums           jsonb NULL,
  error_code          text NULL,
  error_message       text NULL,
  attempts            integer NOT NULL DEFAULT 0,
  runner              text NULL,
  heartbeat_at        timestamptz NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  finished_at         timestamptz NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS tenant_moves_one_running ON linkbay.tenant_moves (moved_tenant_id) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS tenant_moves_running ON linkbay.tenant_moves (created_at) WHERE state = 'running';

DROP TRIGGER IF EXISTS tenant_moves_touch_updated_at ON linkbay.tenant_moves;
CREATE TRIGGER tenant_moves_touch_updated_at BEFORE UPDATE ON linkbay.tenant_moves
  FOR EACH ROW EXECUTE FUNCTION linkbay.touch_updated_at();

-- Moves are administration: the admin role runs them. The app role may read which tenants are
-- being moved (their writes are refused meanwhile), not the URLs: a view without them.
ALTER TABLE linkbay.tenant_moves OWNER TO "app_owner";
GRANT SELECT, INSERT, UPDATE, DELETE ON linkbay.tenant_moves TO "app_admin";
-- A function rather than a view: on Citus the table becomes a Citus local table (its foreign key to
-- the registry, a reference table), and Citus reads its shard as the calling role, which a view's
-- owner rights do not cover. SECURITY DEFINER as the admin role, which may read the table.
CREATE OR REPLACE FUNCTION linkbay.tenant_writes_frozen(tenant text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM linkbay.tenant_moves
                  WHERE moved_tenant_id::text = tenant AND state = 'running'
                    AND step IN ('frozen', 'copied', 'verified', 'switched'))
$$;
ALTER FUNCTION linkbay.tenant_writes_frozen(text) OWNER TO "app_admin";
REVOKE ALL ON FUNCTION linkbay.tenant_writes_frozen(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION linkbay.tenant_writes_frozen(text) TO "app_user", "app_admin";
