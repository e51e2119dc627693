import type { QueryResult } from 'pg';
import { PipelineBrokenError } from './errors.js';
import { clientDestroyedChannel, type ClientDestroyedEvent } from './events.js';
import { PipelinedBatch, type BatchOptions, type PreludeStatement, type StatementConfig } from './pipeline.js';
import type { TenantClient } from './pool.js';

/**
 * One pooled connection carrying several tenant batches at once (src/tenant-pipeline.ts).
 *
 * Each batch is set_config + statement + Sync (src/pipeline.ts): its own implicit transaction, so the
 * tenant setting ends at its Sync and cannot reach the next batch. A batch is written to the socket
 * at once, ahead of the ones before it, and handed to node-postgres as its (one) active query when
 * the ReadyForQuery of the one before arrives, so every reply reaches its own batch, in order. The server runs
 * the batches one after the other; a statement error skips only to that batch's Sync.
 *
 * Each batch settles at its own ReadyForQuery, and only when the session is idle there: a statement
 * that left a transaction open (BEGIN) would hold the batches behind it in that transaction, so it
 * and they fail with PipelineBrokenError and the connection is destroyed (its transaction rolls
 * back). A connection error fails every batch in flight the same way. A broken connection is never
 * reused: it is released to its pool with the error, which destroys it.
 */

type Outcome = { readonly error: Error } | { readonly result: QueryResult };

interface InFlight {
  readonly tenantId: string;
  readonly batch: PipelinedBatch;
  outcome: Outcome | undefined;
  settle(error: Error | null, result?: QueryResult): void;
}

/** The parts of node-postgres's client and connection this class listens to (pg/lib/client.js). */
interface WireClient extends Omit<TenantClient, 'on' | 'removeListener'> {
  connection: {
    stream: { cork?: () => void; uncork?: () => void; destroy(error?: Error): void };
    on(event: 'readyForQuery', listener: (msg: { status?: string }) => void): unknown;
    removeListener(event: 'readyForQuery', listener: (msg: { status?: string }) => void): unknown;
  };
  on(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
  removeListener(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
}

export class PipelineConnection {
  private readonly inFlight: InFlight[] = [];
  private corked = false;
  private released = false;
  /** Why the connection cannot be used any more; set once. */
  broken: Error | undefined;

  constructor(
    private readonly client: WireClient,
    /** Called once when the connection leaves service (broken, or released while idle). */
    private readonly onGone: (connection: PipelineConnection) => void,
    /** Called after a batch settles: a slot is free. */
    private readonly onSlot: (connection: PipelineConnection) => void,
  ) {
    client.on('error', this.onError);
    client.on('end', this.onError);
    client.connection.on('readyForQuery', this.onReady);
  }

  /** Whether `client` is a node-postgres client this class can write batches to. */
  static fits(client: TenantClient): client is TenantClient & WireClient {
    const internal = client as unknown as { connection?: { stream?: unknown; on?: unknown }; pipeline?: boolean };
    return !!internal.connection?.stream && typeof internal.connection.on === 'function' && !internal.pipeline;
  }

  get depth(): number {
    return this.inFlight.length;
  }

  /** Writes one batch now and resolves with its statement's result at its ReadyForQuery. */
  send(prelude: readonly PreludeStatement[], statement: StatementConfig, options: BatchOptions): Promise<QueryResult> {
    return new Promise((resolve, reject) => {
      if (this.broken || this.released) {
        reject(new PipelineBrokenError('connection-lost', { cause: this.broken }));
        return;
      }
      const batch = new PipelinedBatch(prelude, statement, { ...options, pipelined: true }, (error, result) => {
        if (entry.outcome) return;
        entry.outcome = error ? { error } : { result: result! };
        // FATAL (a terminated backend): no ReadyForQuery follows.
        if (error && isFatal(error)) this.break(error);
      });
      const entry: InFlight = {
        tenantId: options.tenantId ?? '',
        batch,
        outcome: undefined,
        settle: (error, result) => (error ? reject(error) : resolve(result!)),
      };
      this.inFlight.push(entry);
      this.corkForTick();
      // The batch at the head is pg's active query: pg writes it (submit) and hands it the replies.
      // One behind it is written now, and handed to pg when the one before it is answered.
      if (this.inFlight.length === 1) {
        this.client.query(batch);
        // pg wrote it only if it was idle; a batch it queued instead would be overtaken by the next.
        if (!batch.written) this.break(new Error('linkbay-multitenant: the pipelined connection was not idle'));
      } else {
        const error = batch.write(this.client.connection as never);
        if (error) this.break(error);
      }
    });
  }

  /** Batches written in the same tick leave in one write. */
  private corkForTick(): void {
    if (this.corked) return;
    const stream = this.client.connection.stream;
    if (!stream.cork || !stream.uncork) return;
    this.corked = true;
    stream.cork();
    process.nextTick(() => {
      this.corked = false;
      stream.uncork!();
    });
  }

  /** After pg has handed this ReadyForQuery to the batch at the head (listeners run in order). */
  private readonly onReady = (msg: { status?: string }): void => {
    const entry = this.inFlight.shift();
    if (!entry?.outcome) {
      if (entry) this.inFlight.unshift(entry);
      this.break(new Error('linkbay-multitenant: a ReadyForQuery came with no batch answered'));
      return;
    }
    if (msg.status !== 'I') {
      this.inFlight.unshift(entry);
      this.break(new PipelineBrokenError('transaction-left-open'), 'not-idle');
      return;
    }
    // The next batch becomes pg's active query before pg reads its replies (this runs inside pg's
    // handling of this ReadyForQuery); it is on the wire already, so pg's submit writes nothing.
    const next = this.inFlight[0];
    if (next) this.client.query(next.batch);
    if ('error' in entry.outcome) entry.settle(entry.outcome.error);
    else entry.settle(null, entry.outcome.result);
    this.onSlot(this);
  };

  private readonly onError = (error?: Error): void => {
    this.break(error ?? new Error('Connection terminated'));
  };

  /**
   * Fails every batch in flight, destroys the socket (an open transaction rolls back) and releases
   * the client to its pool with the error, which ends it instead of pooling it.
   */
  break(cause: Error, reason: ClientDestroyedEvent['reason'] = 'connection-error'): void {
    if (this.broken || this.released) return;
    this.broken = cause;
    const failed = this.inFlight.splice(0);
    for (const entry of failed) {
      const own = entry.outcome && 'error' in entry.outcome ? entry.outcome.error : cause;
      entry.settle(new PipelineBrokenError(cause instanceof PipelineBrokenError ? cause.reason : 'connection-lost', { cause: own }));
    }
    this.client.connection.stream.destroy();
    this.detach();
    this.client.release(cause);
    if (clientDestroyedChannel.hasSubscribers) {
      // The tenant of the first batch that failed (a pipelined connection carries many).
      clientDestroyedChannel.publish({ tenantId: failed[0]?.tenantId ?? '', reason, error: cause } satisfies ClientDestroyedEvent);
    }
    this.onGone(this);
  }

  /** Returns the connection to its pool; only when nothing is in flight. */
  release(): void {
    if (this.broken || this.released || this.inFlight.length > 0) return;
    this.released = true;
    this.detach();
    this.client.release();
    this.onGone(this);
  }

  private detach(): void {
    this.client.connection.removeListener('readyForQuery', this.onReady);
    this.client.removeListener('end', this.onError);
    // The 'error' listener stays on a broken client: pg may still emit on it while it ends.
    if (!this.broken) this.client.removeListener('error', this.onError);
  }
}

function isFatal(error: Error): boolean {
  const severity = (error as { severity?: unknown }).severity;
  return severity === 'FATAL' || severity === 'PANIC';
}
