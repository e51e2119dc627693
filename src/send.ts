import type { QueryResult } from 'pg';
import { PipelinedBatch, type BatchOptions, type PreludeStatement, type StatementConfig } from './pipeline.js';
import type { TenantClient } from './pool.js';

/**
 * Sends a prelude and a statement in one round trip: as one batch (src/pipeline.ts) on a
 * node-postgres client, else queued without awaiting (sendQueued).
 */
export function send(
  client: TenantClient,
  prelude: readonly PreludeStatement[],
  statement: StatementConfig,
  options: BatchOptions,
  implicitTransaction = false,
): Promise<QueryResult> {
  const internal = client as unknown as { connection?: { stream?: unknown }; pipeline?: boolean };
  if (internal.connection?.stream && !internal.pipeline) {
    return PipelinedBatch.run(client, prelude, statement, options);
  }
  return sendQueued(client, prelude, statement, implicitTransaction, options.onPreludeRow);
}

/**
 * For clients we cannot write one batch to (pg in `pipeline` mode, other pool implementations):
 * queue everything without awaiting, so a pipelining client still sends it in one go. Each queued
 * query ends with its own Sync, so a single statement gets an explicit BEGIN/COMMIT around it:
 * otherwise the setting would end with its own implicit transaction.
 */
async function sendQueued(
  client: TenantClient,
  prelude: readonly PreludeStatement[],
  statement: StatementConfig,
  implicitTransaction: boolean,
  onPreludeRow?: (fields: ReadonlyArray<string | null>) => void,
): Promise<QueryResult> {
  const queue: Array<Promise<unknown>> = [];
  if (implicitTransaction) queue.push(client.query('BEGIN'));
  prelude.forEach((p, i) => {
    if (i < prelude.length - 1 || !onPreludeRow) return void queue.push(client.query(p.text, [...p.values]));
    const last = client.query({ text: p.text, values: [...p.values], rowMode: 'array' } as never) as Promise<QueryResult>;
    queue.push(last.then((r) => onPreludeRow((r.rows[0] as unknown[] | undefined)?.map((v) => (v === null || v === undefined ? null : String(v))) ?? [])));
  });
  const result = client.query({ text: statement.text, values: statement.values, rowMode: statement.rowMode, types: statement.types });
  queue.push(result);
  if (implicitTransaction) queue.push(client.query('COMMIT'));
  const settledAll = await Promise.allSettled(queue);
  const failed = settledAll.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    if (implicitTransaction && client.getTransactionStatus?.() !== 'I') await client.query('ROLLBACK').catch(() => undefined);
    throw failed.reason;
  }
  return (await result) as QueryResult;
}
