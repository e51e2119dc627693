-- linkbay-multitenant: the tenant lifecycle (onboarding's `provisioning` status) and the audit log.
-- Added after 00002-tenant-moves.sql was released: library migrations are append-only. Idempotent.

-- A tenant is `provisioning` while its onboarding runs (src/onboarding.ts): refused by every
-- request like a suspended one, activated by the onboarding when every step succeeded. The CHECK of
-- 00001 is found in the catalog (a CHECK constraint on the status column alone, whatever it is
-- named) rather than by an assumed name, and replaced only when it does not allow 'provisioning'.
DO $lifecycle$
DECLARE
  found record;
  current_ok boolean := false;
BEGIN
  FOR found IN
    SELECT c.conname, pg_catalog.pg_get_constraintdef(c.oid) AS definition
      FROM pg_catalog.pg_constraint c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attname = 'status'
     WHERE c.conrelid = 'linkbay.tenants'::regclass AND c.contype = 'c' AND c.conkey = ARRAY[a.attnum]
  LOOP
    IF found.definition LIKE '%''provisioning''%' THEN
      current_ok := true;
    ELSE
      EXECUTE pg_catalog.format('ALTER TABLE linkbay.tenants DROP CONSTRAINT %I', found.conname);
    END IF;
  END LOOP;
  IF NOT current_ok THEN
    ALTER TABLE linkbay.tenants ADD CONSTRAINT tenants_status_check
      CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted'));
  END IF;
END
$lifecycle$;

-- The audit log: who (actor) did what (action) to which tenant, the tenant before and after (JSON,
-- database URLs without their passwords), when, and why (reason). TenantAdminService writes each row
-- in the same transaction as the change it records: no change without its row, no row without its
-- change.
--
-- Audit rows outlive the tenant: no foreign key to linkbay.tenants, and the tenant is in
-- `subject_tenant`, a column not named like a tenant column (purge finds tenant tables by that name;
-- this schema is skipped by it too). The id is kept as text: the canonical spelling of any id type.
CREATE TABLE IF NOT EXISTS linkbay.audit_log (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  actor          text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
  action         text NOT NULL CHECK (action ~ '^[a-z][a-z-]{0,62}$'),
  subject_tenant text NULL,
  before         jsonb NULL,
  after          jsonb NULL,
  reason         text NULL CHECK (length(reason) <= 500)
);

CREATE INDEX IF NOT EXISTS audit_log_subject ON linkbay.audit_log (subject_tenant, id);
CREATE INDEX IF NOT EXISTS audit_log_occurred ON linkbay.audit_log (occurred_at);

-- Append-only, for its owner too: a trigger refuses UPDATE, DELETE and TRUNCATE. Pruning old rows
-- (retention) is a deliberate act of the owner: ALTER TABLE linkbay.audit_log DISABLE TRIGGER ...,
-- the DELETE, ENABLE TRIGGER, in one transaction.
CREATE OR REPLACE FUNCTION linkbay.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  RAISE EXCEPTION 'linkbay.audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS audit_log_append_only ON linkbay.audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON linkbay.audit_log
  FOR EACH ROW EXECUTE FUNCTION linkbay.audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON linkbay.audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON linkbay.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION linkbay.audit_log_append_only();

-- The admin role writes and reads it; the app role neither (no grant: tenants' requests never see
-- who administered whom).
ALTER TABLE linkbay.audit_log OWNER TO "app_owner";
REVOKE ALL ON linkbay.audit_log FROM PUBLIC;
REVOKE ALL ON linkbay.audit_log FROM "app_user";
GRANT SELECT, INSERT ON linkbay.audit_log TO "app_admin";
