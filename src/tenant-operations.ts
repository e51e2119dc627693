import { performance } from 'node:perf_hooks';
import { TenantError } from './errors.js';
import { tenantOperationChannel, type TenantOperation, type TenantOperationEvent } from './events.js';

/** What an operation's result says about itself: its tenant, and a note worth counting on a success. */
export interface OperationResult {
  readonly tenantId: string | null;
  readonly note?: string;
}

/** One lifecycle operation under way: call one of the two when it ends (a second call is ignored). */
export interface OperationObserver {
  succeeded(result?: OperationResult): void;
  failed(error: unknown, tenantId?: string | null): void;
}

/**
 * Starts observing one lifecycle operation, whose end is published on CHANNELS.tenantOperation (for
 * the metrics, a log): the audit log records what was done; this also counts what was refused or
 * failed, which leaves no audit row (its transaction rolled back). `tenantId` is the canonical id
 * known at the start (null when the input was not one: the raw value is never published).
 */
export function startOperation(operation: TenantOperation, tenantId: string | null): OperationObserver {
  const started = performance.now();
  let ended = false;
  const publish = (event: Omit<TenantOperationEvent, 'operation' | 'durationMs'>) => {
    if (ended) return;
    ended = true;
    if (tenantOperationChannel.hasSubscribers) tenantOperationChannel.publish({ operation, ...event, durationMs: performance.now() - started });
  };
  return {
    succeeded(result) {
      const note = result?.note;
      publish({ outcome: 'succeeded', tenantId: result ? result.tenantId : tenantId, ...(note ? { code: note } : {}) });
    },
    failed(error, known = tenantId) {
      const code = (error as { code?: unknown } | null)?.code;
      // Refused: the library said no (bad input, unknown tenant, a conflict), nothing was changed.
      const refused = error instanceof TenantError && error.status < 500;
      publish({ outcome: refused ? 'refused' : 'failed', tenantId: known, code: typeof code === 'string' ? code : ((error as Error | null)?.name ?? 'Error') });
    },
  };
}

/** Runs `fn` as one lifecycle operation (startOperation); `describe` reads its tenant, and a note, from the result. */
export async function observeOperation<T>(
  operation: TenantOperation,
  tenantId: string | null,
  fn: () => Promise<T>,
  describe: (value: T) => OperationResult = () => ({ tenantId }),
): Promise<T> {
  const observer = startOperation(operation, tenantId);
  let value: T;
  try {
    value = await fn();
  } catch (error) {
    observer.failed(error);
    throw error;
  }
  observer.succeeded(describe(value));
  return value;
}

/** The canonical id `canonical` computes, or null when the input is not one (for an operation's event only). */
export function tenantIdOrNull(canonical: () => string): string | null {
  try {
    return canonical();
  } catch {
    return null;
  }
}
