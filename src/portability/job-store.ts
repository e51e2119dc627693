import { TenantExistsError, TenantNotFoundError } from '../errors.js';
import type { Queryable } from '../pool.js';
import { inAdminTransaction, type AdminDatabase } from '../admin-transaction.js';
import { writeAudit, type AuditContext } from '../audit.js';
import type { TableDigest } from './checksum.js';

/** The steps of a move, in order; a job's `step` is the last one completed. */
export const MOVE_STEPS = ['created', 'frozen', 'copied', 'verified', 'switched', 'invalidated', 'cleaned'] as const;
export type MoveStep = (typeof MOVE_STEPS)[number];
export type MoveState = 'running' | 'succeeded' | 'failed';

/** A move job as the API reports it (no database URL: they may carry passwords). */
export interface MoveJob {
  readonly id: string;
  readonly tenantId: string;
  readonly target: string;
  readonly copyMode: boolean;
  readonly step: MoveStep;
  readonly state: MoveState;
  readonly tables: readonly TableDigest[] | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly attempts: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly finishedAt: Date | null;
}

/** What the runner needs besides the public view. */
export interface MoveJobRecord extends MoveJob {
  readonly previousStatus: 'active' | 'suspended';
  readonly sourceDatabaseUrl: string | null;
  readonly targetDatabaseUrl: string | null;
}

const COLUMNS = `id::text, moved_tenant_id::text AS tenant_id, target, copy_mode, step, state, checksums, error_code, error_message, attempts,
  created_at, updated_at, finished_at, previous_status, source_database_url, target_database_url`;

function toJob(row: Record<string, any>): MoveJobRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    target: row.target,
    copyMode: row.copy_mode,
    step: row.step,
    state: row.state,
    tables: row.checksums,
    error: row.error_code ? { code: row.error_code, message: row.error_message } : null,
    attempts: row.attempts,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    previousStatus: row.previous_status,
    sourceDatabaseUrl: row.source_database_url,
    targetDatabaseUrl: row.target_database_url,
  };
}

/** The public view of a job record. */
export function publicJob(job: MoveJobRecord): MoveJob {
  const { previousStatus: _p, sourceDatabaseUrl: _s, targetDatabaseUrl: _t, ...view } = job;
  return view;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `linkbay.tenant_moves` (sql/00002-tenant-moves.sql), through the admin role. A job's start and
 * its outcome (succeeded, failed) are audited in the same transaction as the job row's change; the
 * outcome's actor and reason are those of the start.
 */
export class MoveJobStore {
  constructor(private readonly db: AdminDatabase) {}

  async create(
    input: {
      tenantId: string;
      target: string;
      copyMode: boolean;
      previousStatus: 'active' | 'suspended';
      sourceDatabaseUrl: string | null;
      targetDatabaseUrl: string | null;
    },
    audit?: AuditContext,
  ): Promise<MoveJobRecord> {
    try {
      return await inAdminTransaction(this.db, async (tx) => {
        const { rows } = await tx.query(
          `INSERT INTO linkbay.tenant_moves (moved_tenant_id, target, copy_mode, previous_status, source_database_url, target_database_url)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
          [input.tenantId, input.target, input.copyMode, input.previousStatus, input.sourceDatabaseUrl, input.targetDatabaseUrl],
        );
        const job = toJob(rows[0]);
        await writeAudit(tx, { action: 'move-started', tenantId: job.tenantId, after: { job: job.id, target: job.target, copyMode: job.copyMode }, ...(audit ? { context: audit } : {}) });
        return job;
      });
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new TenantExistsError('this tenant is being moved already', { cause: error });
      throw error;
    }
  }

  async get(id: string): Promise<MoveJobRecord> {
    if (!UUID.test(id)) throw new TenantNotFoundError('move job not found');
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM linkbay.tenant_moves WHERE id = $1`, [id]);
    if (!rows[0]) throw new TenantNotFoundError('move job not found');
    return toJob(rows[0]);
  }

  /** Records a completed step (and the digests once copied), only if the job is still running. */
  async advance(id: string, step: MoveStep, tables?: readonly TableDigest[]): Promise<MoveJobRecord> {
    const done = step === 'cleaned';
    if (done) return inAdminTransaction(this.db, (tx) => this.advanceOn(tx, id, step, tables, done));
    return this.advanceOn(this.db, id, step, tables, done);
  }

  private async advanceOn(db: Queryable, id: string, step: MoveStep, tables: readonly TableDigest[] | undefined, done: boolean): Promise<MoveJobRecord> {
    const { rows } = await db.query(
      `UPDATE linkbay.tenant_moves
          SET step = $2, checksums = COALESCE($3::jsonb, checksums), counts = COALESCE($4::jsonb, counts),
              state = CASE WHEN $5 THEN 'succeeded' ELSE state END, finished_at = CASE WHEN $5 THEN now() END,
              heartbeat_at = now()
        WHERE id = $1 AND state = 'running' RETURNING ${COLUMNS}`,
      [id, step, tables ? JSON.stringify(tables) : null, tables ? JSON.stringify(Object.fromEntries(tables.map((t) => [t.name, t.rows]))) : null, done],
    );
    if (!rows[0]) throw new Error('the move job is no longer running');
    const job = toJob(rows[0]);
    if (done) await this.audit(db, job, 'move-succeeded', { job: job.id, target: job.target, tables: job.tables, sourceKept: job.copyMode || job.error?.code === 'LBMT_MOVE_SOURCE_KEPT' });
    return job;
  }

  /** The outcome's audit row, as the actor (and with the reason) that started the job. */
  private async audit(db: Queryable, job: MoveJobRecord, action: 'move-succeeded' | 'move-failed', after: Record<string, unknown>): Promise<void> {
    const { rows } = await db.query(`SELECT actor, reason FROM linkbay.audit_log WHERE action = 'move-started' AND after->>'job' = $1 ORDER BY id LIMIT 1`, [job.id]);
    await writeAudit(db, { action, tenantId: job.tenantId, after, context: { actor: rows[0]?.actor ?? 'system', ...(rows[0]?.reason ? { reason: rows[0].reason } : {}) } });
  }

  /** Claimed by a runner: counts the attempt. */
  async claimed(id: string, runner: string): Promise<MoveJobRecord> {
    const { rows } = await this.db.query(
      `UPDATE linkbay.tenant_moves SET attempts = attempts + 1, runner = $2, heartbeat_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, runner],
    );
    return toJob(rows[0]);
  }

  async fail(id: string, code: string, message: string): Promise<MoveJobRecord> {
    const failed = await inAdminTransaction(this.db, async (tx) => {
      const { rows } = await tx.query(
        `UPDATE linkbay.tenant_moves SET state = 'failed', error_code = $2, error_message = $3, finished_at = now()
          WHERE id = $1 AND state = 'running' RETURNING ${COLUMNS}`,
        [id, code, message],
      );
      if (!rows[0]) return undefined;
      const job = toJob(rows[0]);
      await this.audit(tx, job, 'move-failed', { job: job.id, target: job.target, step: job.step, error: { code, message } });
      return job;
    });
    return failed ?? this.get(id);
  }

  /** Notes an error after the switch (the job stays running: resuming finishes it). */
  async note(id: string, code: string, message: string): Promise<void> {
    await this.db.query(`UPDATE linkbay.tenant_moves SET error_code = $2, error_message = $3 WHERE id = $1`, [id, code, message]);
  }

  async running(): Promise<string[]> {
    const { rows } = await this.db.query(`SELECT id::text FROM linkbay.tenant_moves WHERE state = 'running' ORDER BY created_at`);
    return rows.map((row) => row.id as string);
  }
}

/** Whether the tenant's writes are frozen by a move (linkbay.tenant_writes_frozen, a function the app role may call). */
export async function writesFrozen(db: Queryable, tenantId: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 WHERE linkbay.tenant_writes_frozen($1)', [tenantId]);
  return rows.length > 0;
}
