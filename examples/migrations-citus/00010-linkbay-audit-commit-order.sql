-- linkbay-multitenant: the audit log in commit order, for consumers that follow it (tailAudit,
-- GET /admin/audit/tail). Added after 00004-policy-manifest.sql was released: library migrations
-- are append-only. Idempotent.
--
-- An audit row's id is taken at its INSERT and its occurred_at is its transaction's start, but it
-- becomes visible at COMMIT: a long transaction's row (a purge) appears after rows with greater ids,
-- and a consumer that polled by id or by time has passed it. `tx` is the writing transaction's id
-- (xid8: 64 bits, never wraps). Every row whose tx is below the snapshot's xmin (the oldest
-- transaction still running) has been committed or rolled back, and no row can be added below it
-- later: the tail serves only those, in (tx, id) order, so a cursor over it misses nothing.
ALTER TABLE linkbay.audit_log ADD COLUMN IF NOT EXISTS tx xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id();
CREATE INDEX IF NOT EXISTS audit_log_commit_order ON linkbay.audit_log (tx, id);

-- The admin role may INSERT (it writes every row), and could give a row a `tx` of its choosing: one
-- below a consumer's cursor would never be served to it (while listAudit shows it). The writing
-- transaction's id is set here, whatever the INSERT said.
CREATE OR REPLACE FUNCTION linkbay.audit_log_commit_order() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  NEW.tx := pg_catalog.pg_current_xact_id();
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS audit_log_commit_order ON linkbay.audit_log;
CREATE TRIGGER audit_log_commit_order BEFORE INSERT ON linkbay.audit_log
  FOR EACH ROW EXECUTE FUNCTION linkbay.audit_log_commit_order();
