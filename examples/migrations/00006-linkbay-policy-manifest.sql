-- linkbay-multitenant: the policy manifest, read by doctor's drift check (src/posture/drift.ts).
-- Added after 00002-tenant-moves.sql was released: library migrations are append-only.
--
-- Each tenant table's generated migration is followed by a generated `manifest-<schema>-<table>`
-- migration that records the table's state as the migrations left it: its RLS flags, its policies
-- and its grants. doctor reads the same state from the live catalog and names every difference (a
-- policy dropped or rewritten by hand or by a schema tool, RLS disabled, a grant widened).
--
-- The state is kept in full rather than as a hash: equal states are equal jsonb values either way,
-- and a full state lets doctor say what changed, not only that something did.
--
-- A change you mean to keep is recorded again by a migration of your own:
--   SELECT linkbay.record_table_state('public.orders');
CREATE TABLE IF NOT EXISTS linkbay.policy_manifest (
  -- format('%I.%I', schema, table): the table's schema-qualified name, quoted where needed.
  -- Keyed by name, not oid: a dump restored elsewhere keeps its manifest. (No column is named like
  -- a tenant column: this is library metadata, not tenant data.)
  table_name  text PRIMARY KEY,
  state       jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);

-- The state of one table, from pg_catalog only (readable by every role, so doctor may run as the
-- application role). search_path is pinned: pg_get_expr qualifies names that are not on the path,
-- so a policy expression reads the same whoever records or checks it.
--   owner          the table's owner
--   rls, force     relrowsecurity, relforcerowsecurity
--   policies       name -> {permissive, cmd (r a w d *), roles (sorted, PUBLIC for 0), using, check}
--   grants         grantee (PUBLIC for 0) -> sorted privileges, ' WITH GRANT OPTION' appended when grantable
--   column_grants  column -> grantee -> privileges, for column-level grants (GRANT UPDATE (col) ...)
CREATE OR REPLACE FUNCTION linkbay.table_state(rel regclass) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object(
    'owner', pg_get_userbyid(c.relowner)::text,
    'rls', c.relrowsecurity,
    'force', c.relforcerowsecurity,
    'policies', COALESCE((
      SELECT jsonb_object_agg(p.polname::text, jsonb_build_object(
               'permissive', p.polpermissive,
               'cmd', p.polcmd::text,
               'roles', (SELECT jsonb_agg(r.name ORDER BY r.name)
                           FROM (SELECT CASE WHEN o = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(o)::text END AS name
                                   FROM unnest(p.polroles) AS o) AS r),
               'using', pg_get_expr(p.polqual, p.polrelid),
               'check', pg_get_expr(p.polwithcheck, p.polrelid)))
        FROM pg_policy p WHERE p.polrelid = c.oid), '{}'::jsonb),
    'grants', COALESCE((
      SELECT jsonb_object_agg(g.grantee, g.privileges)
        FROM (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
                     jsonb_agg(DISTINCT a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS privileges
                FROM aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) AS a
               GROUP BY 1) AS g), '{}'::jsonb),
    'column_grants', COALESCE((
      SELECT jsonb_object_agg(cg.attname, cg.grants)
        FROM (SELECT g.attname, jsonb_object_agg(g.grantee, g.privileges) AS grants
                FROM (SELECT att.attname::text AS attname,
                             CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
                             jsonb_agg(DISTINCT a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS privileges
                        FROM pg_attribute att CROSS JOIN LATERAL aclexplode(att.attacl) AS a
                       WHERE att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped AND att.attacl IS NOT NULL
                       GROUP BY 1, 2) AS g
               GROUP BY 1) AS cg), '{}'::jsonb))
  FROM pg_class c WHERE c.oid = rel
$$;

-- Records (or records again) one table's state. plpgsql: its body is not resolved when it is
-- created, which keeps it creatable where the manifest table is not (a Citus worker receiving the
-- function). It runs with its caller's rights: only a role that may write the manifest (its owner,
-- who runs the migrations, or a superuser) records.
CREATE OR REPLACE FUNCTION linkbay.record_table_state(rel regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO linkbay.policy_manifest AS m (table_name, state, recorded_at)
  SELECT format('%I.%I', n.nspname, c.relname), linkbay.table_state(c.oid), now()
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = rel
  ON CONFLICT (table_name) DO UPDATE SET state = EXCLUDED.state, recorded_at = EXCLUDED.recorded_at;
END
$$;

-- The owner role writes the manifest (in migrations); the app and admin roles read it (doctor, also
-- at start-up as the application role). Nobody else changes it.
ALTER TABLE linkbay.policy_manifest OWNER TO "app_owner";
ALTER FUNCTION linkbay.table_state(regclass) OWNER TO "app_owner";
ALTER FUNCTION linkbay.record_table_state(regclass) OWNER TO "app_owner";
REVOKE ALL ON linkbay.policy_manifest FROM PUBLIC;
GRANT SELECT ON linkbay.policy_manifest TO "app_user", "app_admin";
REVOKE ALL ON FUNCTION linkbay.record_table_state(regclass) FROM PUBLIC;
