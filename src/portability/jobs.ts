import { randomUUID } from 'node:crypto';
import { connectClient } from '../client-hygiene.js';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { qualifiedName, quoteIdent } from '../config.js';
import { TenantError, TenantInputError } from '../errors.js';
import type { TenantPool } from '../pool.js';
import { auditContext, type AuditContext } from '../audit.js';
import { startOperation } from '../tenant-operations.js';
import { withTenantTransaction } from '../transaction.js';
import type { TableDigest } from './checksum.js';
import { exportTenantStream, writeExport } from './export.js';
import { withCopySession } from './session.js';
import { WriteFreeze } from './write-freeze.js';
import { importTenantStream } from './import.js';
import { MOVE_STEPS, MoveJobStore, publicJob, writesFrozen, type MoveJob, type MoveJobRecord, type MoveStep } from './job-store.js';
import type { TenantPortability } from './service.js';

export interface MoveTarget {
  /** The URL the registry will hold: the target database as the app role; null for the shared database. */
  readonly databaseUrl: string | null;
  /** The target database as a role under RLS that owns the tables' sequences (the owner role). */
  readonly targetPool: TenantPool;
}

export interface TenantMoveJobsOptions {
  readonly portability: TenantPortability;
  /** The shared database as the admin role: the job table, and the session locks of running jobs. */
  readonly adminPool: TenantPool & { query(text: string, values?: unknown[]): Promise<{ rows: any[] }> };
  /** The databases a tenant may be moved to, by name. */
  readonly targets: Readonly<Record<string, MoveTarget>>;
  /**
   * How long to wait after the switch before the source's writes resume (for other instances to hear
   * of it: NOTIFY, or their cache TTL). Default 2000 ms.
   */
  readonly settleMs?: number;
  /**
   * How long the freeze may wait for the tenant's transactions already running on the source
   * (src/write-gate.ts) before the move gives up (LBMT_MOVE_WRITES_RUNNING, nothing copied). Default 30000 ms.
   */
  readonly freezeTimeoutMs?: number;
  /** Called after each step is recorded (tests abandon a job there, as a crashed instance would). */
  readonly afterStep?: (job: MoveJob, step: MoveStep) => Promise<void> | void;
}

/** Copies made before giving up when the source keeps changing under a frozen tenant. */
const MAX_COPIES = 3;

/**
 * Tenant moves as durable jobs in `linkbay.tenant_moves`. Each step is recorded once done, in order:
 * frozen (writes refused: TenantMovingError, Koa 503 + Retry-After; reads served; after recording
 * it the runner takes the tenant's write key on the source, src/write-gate.ts, which waits for the
 * tenant's running transactions and makes new ones read-only until the switch settled) → copied (export
 * piped into the target's import, one transaction, checksums equal) → verified (the target read back
 * through the registry's future URL as the app role, and the source read again: both equal to the
 * copy) → switched (registry) → invalidated (settled; writes allowed again, on the target) →
 * cleaned (source rows deleted when still exactly the copied ones; kept with `copyMode`).
 *
 * A runner holds a session advisory lock on the job's key in the shared database: another instance
 * can take a job over only once that session is gone (a crash), and `resume()` runs every running
 * job whose lock is free from its last step. Each step is idempotent, so a crash at any point
 * leaves the old placement serving (before `switched`) or the new one complete (after).
 */
export class TenantMoveJobs {
  private readonly store: MoveJobStore;
  private readonly settleMs: number;
  private readonly freezeTimeoutMs: number;
  readonly runner = randomUUID();

  constructor(private readonly options: TenantMoveJobsOptions) {
    this.store = new MoveJobStore(options.adminPool);
    // The write key rides in the vanilla prelude only (src/write-gate.ts): Citus's set_tenant form
    // has none, so a move there could lose a write that was running when it froze.
    if (options.portability.tenancy.engine === 'citus') {
      throw new TypeError('tenant moves between databases are for the vanilla engine; on Citus, move a tenant between nodes with isolate_tenant_to_new_shard and citus_move_shard_placement');
    }
    this.settleMs = options.settleMs ?? 2000;
    if (!Number.isSafeInteger(this.settleMs) || this.settleMs < 0) throw new TypeError('`settleMs` must be a non-negative integer (milliseconds)');
    this.freezeTimeoutMs = options.freezeTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(this.freezeTimeoutMs) || this.freezeTimeoutMs < 1) throw new TypeError('`freezeTimeoutMs` must be a positive integer (milliseconds)');
  }

  /** Records a move of the tenant to the named target; `run` (or any instance's `resume`) performs it. */
  async start(tenantId: string | number | bigint, options: { target: string; copyMode?: boolean } & AuditContext): Promise<MoveJob> {
    const target = Object.hasOwn(this.options.targets, options.target) ? this.options.targets[options.target] : undefined;
    if (!target) throw new TenantInputError('`target` must name a configured target database');
    const audit = auditContext(options);
    const tenant = await this.options.portability.options.admin.getTenant(tenantId);
    if (tenant.status === 'deleted') throw new TenantInputError('a deleted tenant cannot be moved');
    if (tenant.status === 'provisioning') throw new TenantInputError('a provisioning tenant cannot be moved');
    if ((tenant.databaseUrl ?? null) === target.databaseUrl) throw new TenantInputError('the tenant already lives in that database');
    const job = await this.store.create({
      tenantId: tenant.id,
      target: options.target,
      copyMode: options.copyMode === true,
      previousStatus: tenant.status,
      sourceDatabaseUrl: tenant.databaseUrl,
      targetDatabaseUrl: target.databaseUrl,
    }, audit);
    return publicJob(job);
  }

  async get(id: string): Promise<MoveJob> {
    return publicJob(await this.store.get(id));
  }

  /** Whether the tenant's writes are refused now (a move between freezing and the switch settling). */
  isWriteFrozen(tenantId: string): Promise<boolean> {
    return writesFrozen(this.options.adminPool, tenantId);
  }

  /**
   * Runs the job to its end from its last recorded step, unless another live instance holds it (then
   * it returns the job as it is). Before the switch a failure undoes the copy and fails the job (the
   * source keeps serving); after it the job stays running, for a later `run` or `resume`.
   */
  async run(id: string): Promise<MoveJob> {
    const lock = await connectClient(this.options.adminPool);
    let lockError: Error | undefined;
    const onError = (error: Error) => (lockError = error);
    lock.on?.('error', onError);
    try {
      const { rows } = await lock.query(`SELECT pg_try_advisory_lock(hashtextextended('linkbay-move:' || $1, 0)) AS got`, [id]);
      if (!rows[0].got) return this.get(id);
      try {
        let job = await this.store.get(id);
        // A job for a target this instance does not know is left to an instance that does.
        if (job.state !== 'running' || !Object.hasOwn(this.options.targets, job.target)) return publicJob(job);
        job = await this.store.claimed(id, this.runner);
        // Still ours? The lock lives as long as this session: a dead session means another instance may run it.
        const lost = async () => lockError ?? (await lock.query('SELECT 1').then(() => undefined, (error: Error) => (lockError = error)));
        // This run's end, for the metrics: succeeded (the source's rows kept, a note), failed (undone
        // before the switch), or thrown (after the switch the job stays running for a resume).
        const observer = startOperation('move', job.tenantId);
        let ended: MoveJobRecord;
        try {
          ended = await this.steps(job, lost);
        } catch (error) {
          observer.failed(error);
          throw error;
        }
        if (ended.state !== 'succeeded') observer.failed(ended.error ?? { code: 'LBMT_MOVE_INCOMPLETE' });
        else observer.succeeded({ tenantId: ended.tenantId, ...(ended.error?.code === 'LBMT_MOVE_SOURCE_KEPT' ? { note: ended.error.code } : {}) });
        return publicJob(ended);
      } finally {
        await lock.query(`SELECT pg_advisory_unlock(hashtextextended('linkbay-move:' || $1, 0))`, [id]).catch(() => undefined);
      }
    } finally {
      lock.removeListener?.('error', onError);
      lock.release(lockError ?? undefined);
    }
  }

  /** Runs every running job no live instance holds (those a crashed instance left), one by one. */
  async resume(): Promise<MoveJob[]> {
    const done: MoveJob[] = [];
    for (const id of await this.store.running()) done.push(await this.run(id));
    return done;
  }

  private async steps(start: MoveJobRecord, lost: () => Promise<Error | undefined>): Promise<MoveJobRecord> {
    let job = start;
    const target = this.options.targets[job.target]!;
    const { admin, pools } = this.options.portability.options;
    const tenancy = this.options.portability.tenancy;
    const registered = await admin.getTenant(job.tenantId);
    const source = { ...registered, databaseUrl: job.sourceDatabaseUrl };
    const record = async (step: MoveStep, tables?: readonly TableDigest[]) => {
      const error = await lost();
      if (error) throw error; // our lock is gone: another instance may take over; stop here
      job = await this.store.advance(job.id, step, tables);
      await this.options.afterStep?.(publicJob(job), step);
    };
    const at = (step: MoveStep) => MOVE_STEPS.indexOf(job.step) < MOVE_STEPS.indexOf(step);
    // The switch and its record are two writes: a runner that died between them left the registry on
    // the target with the job before `switched`. The target then serves (and may have taken writes):
    // the job is switched, and nothing of the target may ever be undone again.
    if (at('switched') && (registered.databaseUrl ?? null) === job.targetDatabaseUrl) job = await this.store.advance(job.id, 'switched');
    // The write gate (src/write-gate.ts), held on the source from `frozen` until the switch settled.
    let freeze: WriteFreeze | undefined;
    const unfreeze = async () => {
      await freeze?.release();
      freeze = undefined;
    };
    try {
      if (at('frozen')) await record('frozen');
      if (at('invalidated')) {
        // Waits for the tenant's transactions already running on the source (a write that passed
        // every check before the freeze commits now, so the copy has it); new ones are read-only.
        try {
          freeze = await pools.usePool(source, (pool) => WriteFreeze.take(pool, job.tenantId, this.freezeTimeoutMs));
        } catch (error) {
          // After the switch the target holds the tenant: a source that cannot be frozen (gone, busy)
          // must not keep the job, and the tenant's writes, waiting; the settle wait still runs.
          if (at('switched')) throw error;
        }
        // Resumed after `verified`: no instance held the key meanwhile, so the source is read again.
        if (job.step === 'verified') job = await this.store.advance(job.id, 'copied');
      }
    } catch (error) {
      await unfreeze();
      if (await lost()) throw error;
      if (at('switched')) return this.failBeforeSwitch(job, target, error);
      throw error;
    }
    try {
      let copies = 0;
      while (at('verified')) {
        if (at('copied')) {
          // A crash may have left a committed copy: the target does not serve the tenant yet, so it is cleared first.
          await deleteRows(target.targetPool, job.tenantId, tenancy);
          let trailer: readonly TableDigest[] | undefined;
          await pools.usePool(source, async (pool) => {
            const stream = exportTenantStream(pool, job.tenantId, { tenancy, onTrailer: (t) => (trailer = t.tables) });
            await importTenantStream(target.targetPool, job.tenantId, stream, { tenancy });
          });
          copies += 1;
          await record('copied', trailer);
        }
        const viaTarget = await pools.usePool({ ...source, databaseUrl: target.databaseUrl }, (pool) => digests(pool, job.tenantId, tenancy));
        if (!sameDigests(viaTarget, job.tables)) throw new TenantError('LBMT_MOVE_UNVERIFIED', 'the target database URL does not read back the copied rows', 500, true);
        const again = await pools.usePool(source, (pool) => digests(pool, job.tenantId, tenancy));
        // The gate still held: nothing the library sends can have written since the copy.
        const released = await freeze!.lost();
        if (released) throw new TenantError('LBMT_MOVE_FREEZE_LOST', "the connection holding the tenant's writes frozen was lost; the source is unchanged", 503, true, { cause: released });
        if (sameDigests(again, job.tables)) await record('verified');
        // Changed under the gate: a write that does not go through it (an admin, a superuser).
        else if (copies >= MAX_COPIES) throw new TenantError('LBMT_MOVE_SOURCE_CHANGED', 'the source kept changing while its writes were frozen', 500, true);
        else job = await this.store.advance(job.id, 'frozen'); // copy again
      }
    } catch (error) {
      await unfreeze();
      if (await lost()) throw error;
      return this.failBeforeSwitch(job, target, error);
    }
    try {
      if (at('switched')) {
        // The key still held, right before the switch: a write cannot have landed on the source since
        // the verification (after the switch it would be left there).
        const released = await freeze?.lost();
        if (released) throw new BeforeSwitch(new TenantError('LBMT_MOVE_FREEZE_LOST', "the connection holding the tenant's writes frozen was lost; the source is unchanged", 503, true, { cause: released }));
        await admin.updateTenant(job.tenantId, { databaseUrl: job.targetDatabaseUrl });
        await record('switched');
      }
      if (at('invalidated')) {
        await sleep(this.settleMs); // other instances hear of the switch before the source's writes resume
        await unfreeze();
        // This instance stops serving the tenant from the old database (its pool, if it had one of its own).
        if (job.sourceDatabaseUrl) await pools.closeDatabasePool(job.sourceDatabaseUrl).catch(() => undefined);
        await record('invalidated');
      }
      if (at('cleaned')) {
        const kept = job.copyMode || !(await pools.usePool(source, (pool) => deleteIfUnchanged(pool, job.tenantId, tenancy, job.tables)));
        if (kept && !job.copyMode) await this.store.note(job.id, 'LBMT_MOVE_SOURCE_KEPT', 'the source changed after the copy: its rows were kept');
        await record('cleaned');
      }
    } catch (error) {
      await unfreeze();
      if (await lost()) throw error instanceof BeforeSwitch ? error.cause : error;
      if (error instanceof BeforeSwitch) return this.failBeforeSwitch(job, target, error.cause);
      const failure = error instanceof TenantError && error.expose ? error : undefined;
      await this.store.note(job.id, failure?.code ?? 'LBMT_MOVE_INCOMPLETE', failure?.message ?? 'the move stopped after the switch; resume finishes it');
      throw error;
    }
    return job;
  }

  /** Before the switch the source still serves: the copy is undone so that the move can be tried again. */
  private async failBeforeSwitch(job: MoveJobRecord, target: MoveTarget, error: unknown): Promise<MoveJobRecord> {
    // Never the target the registry points at: then it serves the tenant (a switch not yet recorded).
    const now = await this.options.portability.options.admin.getTenant(job.tenantId);
    if ((now.databaseUrl ?? null) === job.targetDatabaseUrl) throw error;
    await deleteRows(target.targetPool, job.tenantId, this.options.portability.tenancy).catch(() => undefined);
    const failure = error instanceof TenantError ? error : undefined;
    return this.store.fail(job.id, failure?.code ?? 'LBMT_MOVE_FAILED', failure?.expose ? failure.message : 'the move failed before the switch; the source is unchanged');
  }
}

/** A failure found after the copy was verified and before the switch was made: the source still serves. */
class BeforeSwitch extends Error {
  constructor(override readonly cause: unknown) {
    super('before the switch');
  }
}

/** The tenant's digests on `pool`, as an export computes them (rows read and dropped). */
async function digests(pool: TenantPool, tenantId: string, tenancy: TenantPortability['tenancy']): Promise<readonly TableDigest[]> {
  let tables: readonly TableDigest[] = [];
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  await pipeline(exportTenantStream(pool, tenantId, { tenancy, onTrailer: (t) => (tables = t.tables) }), sink);
  return tables;
}

function sameDigests(a: readonly TableDigest[], b: readonly TableDigest[] | null): boolean {
  return !!b && a.length === b.length && a.every((d, i) => d.name === b[i]!.name && d.rows === b[i]!.rows && d.sha256 === b[i]!.sha256);
}

async function deleteRows(pool: TenantPool, tenantId: string, tenancy: TenantPortability['tenancy']): Promise<void> {
  await withTenantTransaction(pool, tenantId, async (tx) => {
    for (const table of [...tenancy.tables].reverse()) {
      await tx.query(`DELETE FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1`, [tenantId]);
    }
  }, { tenancy });
}

/**
 * Deletes the source rows when they still hash to the copy, in one REPEATABLE READ transaction: the
 * digests and the DELETE see the same snapshot, a row changed meanwhile fails the DELETE
 * (serialization failure: kept), and a row added meanwhile is not in the snapshot, so not deleted.
 */
async function deleteIfUnchanged(pool: TenantPool, tenantId: string, tenancy: TenantPortability['tenancy'], copied: readonly TableDigest[] | null): Promise<boolean> {
  const session = { readOnly: false, isolation: 'repeatable read' as const, tenancy };
  try {
    return await withCopySession(pool, tenantId, session, async (client) => {
      const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
      const trailer = await writeExport(client, sink, tenantId, tenancy);
      if (!sameDigests(trailer.tables, copied)) return { value: false, commit: false };
      for (const table of [...tenancy.tables].reverse()) {
        await client.query(`DELETE FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1`, [tenantId]);
      }
      return { value: true, commit: true };
    });
  } catch (error) {
    if ((error as { code?: string }).code === '40001') return false; // written meanwhile: kept
    throw error;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
