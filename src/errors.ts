/**
 * Errors with a stable `code` (never reused once retired), an HTTP `status` and an `expose` flag
 * for the edges that render them, and the original error in `cause`.
 */

export interface TenantErrorOptions {
  cause?: unknown;
}

export class TenantError extends Error {
  /** Stable machine-readable code, e.g. `LBMT_TENANT_REQUIRED`. */
  readonly code: string;
  /** HTTP status an edge (Koa middleware) should answer with. */
  readonly status: number;
  /** Whether `message` is safe to show to the caller. */
  readonly expose: boolean;

  constructor(code: string, message: string, status = 500, expose = false, options: TenantErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.expose = expose;
  }
}

/** No tenant was given and none is in the TenantContext. */
export class TenantRequiredError extends TenantError {
  constructor(message = 'a tenant is required here and none is set', options?: TenantErrorOptions) {
    super('LBMT_TENANT_REQUIRED', message, 400, true, options);
  }
}

/** The tenant id is not a valid id of the configured type. The raw value is not echoed back. */
export class InvalidTenantIdError extends TenantError {
  constructor(message: string, options?: TenantErrorOptions) {
    super('LBMT_INVALID_TENANT_ID', message, 400, true, options);
  }
}

export class TenantNotFoundError extends TenantError {
  constructor(message = 'tenant not found', options?: TenantErrorOptions) {
    super('LBMT_TENANT_NOT_FOUND', message, 404, true, options);
  }
}

export class TenantSuspendedError extends TenantError {
  constructor(message = 'tenant is not active', options?: TenantErrorOptions) {
    super('LBMT_TENANT_SUSPENDED', message, 403, true, options);
  }
}

/** One refused field of an input: `field` is its path (`metadata`, `plan`), `message` names it. */
export interface FieldIssue {
  readonly field: string;
  readonly message: string;
}

/**
 * Tenant data given to TenantAdminService is not valid; the message names the field. When the
 * input schemas (src/tenant-schema.ts) refused it, `issues` lists every refused field.
 */
export class TenantInputError extends TenantError {
  readonly issues: readonly FieldIssue[];
  constructor(message: string, options?: TenantErrorOptions & { issues?: readonly FieldIssue[] }) {
    super('LBMT_TENANT_INPUT_INVALID', message, 422, true, options);
    this.issues = options?.issues ?? [];
  }
}

/** Another tenant already has this id, slug or domain. */
export class TenantExistsError extends TenantError {
  constructor(message = 'another tenant already has this id, slug or domain', options?: TenantErrorOptions) {
    super('LBMT_TENANT_EXISTS', message, 409, true, options);
  }
}

/** A tenant exceeded its request rate (tenantRateLimit). */
export class TenantRateLimitedError extends TenantError {
  /** Seconds until a request may succeed again. */
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number, options?: TenantErrorOptions) {
    super('LBMT_RATE_LIMITED', message, 429, true, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Two resolution strategies named different tenants for one request (e.g. header vs subdomain). */
export class TenantConflictError extends TenantError {
  constructor(message = 'the request names more than one tenant', options?: TenantErrorOptions) {
    super('LBMT_TENANT_CONFLICT', message, 400, true, options);
  }
}

/** A nested tenant transaction asked for another tenant than the one it is inside. */
export class TenantMismatchError extends TenantError {
  constructor(message: string, options?: TenantErrorOptions) {
    super('LBMT_TENANT_MISMATCH', message, 500, false, options);
  }
}

/**
 * PostgreSQL refused the statement under row level security (SQLSTATE 42501), e.g. an INSERT of
 * another tenant's row. The server's message may name the table; it never carries row values.
 */
export class TenantIsolationError extends TenantError {
  constructor(message: string, options?: TenantErrorOptions) {
    super('LBMT_ISOLATION_VIOLATION', message, 403, false, options);
  }
}

/** The transaction handle was used after its callback settled. */
export class TransactionClosedError extends TenantError {
  constructor(message = 'this tenant transaction has already ended; use the handle only inside its callback') {
    super('LBMT_TRANSACTION_CLOSED', message, 500, false);
  }
}

/** The statement that ended the transaction with a ROLLBACK although `fn` succeeded. */
export class TransactionAbortedError extends TenantError {
  constructor(options?: TenantErrorOptions) {
    super(
      'LBMT_TRANSACTION_ABORTED',
      'the transaction was rolled back: a statement in it failed and the error was caught inside fn, so nothing was committed',
      500,
      false,
      options,
    );
  }
}

/**
 * A statement inside the tenant transaction ended it (COMMIT, ROLLBACK, END): what follows would run
 * outside the transaction and its tenant setting. The statement is refused and the connection is
 * destroyed on release, since its session state is no longer known.
 */
export class TransactionEndedError extends TenantError {
  constructor() {
    super(
      'LBMT_TRANSACTION_ENDED',
      'a statement ended the tenant transaction (COMMIT/ROLLBACK inside fn); transaction control belongs to withTenantTransaction',
      500,
      false,
    );
  }
}

/**
 * A pipelined tenantQuery (`createTenantDb(pool, { pipeline })`) that cannot be answered: its
 * connection failed with it in flight (`connection-lost`: a killed backend, a reset socket; the
 * statement may or may not have committed, as with any statement whose connection dies before the
 * reply), or a statement left a transaction open (`transaction-left-open`: BEGIN sent through
 * tenantQuery; rolled back, with every batch written behind it). The connection is destroyed.
 */
export class PipelineBrokenError extends TenantError {
  readonly reason: 'connection-lost' | 'transaction-left-open';

  constructor(reason: PipelineBrokenError['reason'], options?: TenantErrorOptions) {
    super(
      'LBMT_PIPELINE_BROKEN',
      reason === 'connection-lost'
        ? 'the pipelined connection failed with this statement in flight; it may or may not have been committed'
        : 'a statement left a transaction open on a pipelined connection (transaction control belongs to withTenantTransaction); it and the statements behind it were rolled back',
      500,
      false,
      options,
    );
    this.reason = reason;
  }
}

/**
 * A per-tenant limit (src/limits.ts) stopped the statement: its statement timeout (57014) or lock
 * timeout (55P03). Nothing of the transaction was committed. 503: the tenant may retry later, the
 * service is not broken.
 */
export class TenantLimitError extends TenantError {
  /** Seconds a client should wait before retrying (sent as `Retry-After` by the Koa problem handler). */
  readonly retryAfterSeconds = 1;
  constructor(readonly limit: 'statement_timeout' | 'lock_timeout', options?: TenantErrorOptions) {
    super(
      limit === 'statement_timeout' ? 'LBMT_STATEMENT_TIMEOUT' : 'LBMT_LOCK_TIMEOUT',
      limit === 'statement_timeout' ? "the statement ran past the tenant's statement timeout and was cancelled" : "the statement waited past the tenant's lock timeout",
      503,
      true,
      options,
    );
  }
}

/** The steps of an onboarding, in order (src/onboarding.ts). */
export type OnboardingStep = 'registry' | 'database' | 'migrations' | 'seed' | 'health-check' | 'activate';

/**
 * An onboarding step failed (`step`, the original in `cause`); every step before it was undone, in
 * reverse: the tenant's database dropped, the roles it created dropped, its seeded rows purged, its
 * registry row removed. `undoFailures` lists what could not be undone (empty when everything was).
 * 502 when a database the onboarding depends on refused or failed (the cause has a SQLSTATE or a
 * connection error code), 500 otherwise (a hook threw, a check failed).
 */
export class OnboardingError extends TenantError {
  constructor(
    readonly step: OnboardingStep,
    readonly undoFailures: ReadonlyArray<{ readonly step: OnboardingStep; readonly error: unknown }>,
    options: TenantErrorOptions & { status?: number } = {},
  ) {
    const cause = options.cause as { code?: unknown; message?: unknown } | undefined;
    const why = cause instanceof TenantError && cause.expose ? cause.message : typeof cause?.code === 'string' ? `SQLSTATE ${cause.code}` : 'see the server log';
    const undone = undoFailures.length === 0 ? 'every earlier step was undone' : `undoing failed at: ${undoFailures.map((f) => f.step).join(', ')}`;
    super('LBMT_ONBOARDING_FAILED', `onboarding failed at the ${step} step (${why}); ${undone}`, options.status ?? 500, true, options);
  }
}

/** The configuration is invalid; the message names the option. */
export class TenancyConfigError extends TenantError {
  constructor(message: string, options?: TenantErrorOptions) {
    super('LBMT_CONFIG_INVALID', message, 500, false, options);
  }
}

/** The database's posture breaks isolation (thrown by `assertPosture`). */
export class PostureError extends TenantError {
  readonly findings: readonly unknown[];
  constructor(message: string, findings: readonly unknown[]) {
    super('LBMT_POSTURE_UNSAFE', message, 500, false);
    this.findings = findings;
  }
}

/** `assertTenantIsolation` observed a breach. */
export class IsolationBreachError extends TenantError {
  readonly report: unknown;
  constructor(message: string, report: unknown) {
    super('LBMT_ISOLATION_BREACH', message, 500, false);
    this.report = report;
  }
}

/**
 * Citus mode: the tenant could not be set in a way that reaches the workers (linkbay.set_tenant is
 * missing, or refused: no `citus.propagate_set_commands = 'local'` for the role, not a Citus
 * coordinator). Nothing of the caller's statement ran: the transaction fails closed.
 */
export class CitusTenantNotSetError extends TenantError {
  constructor(message = 'the tenant could not be set on the Citus cluster; nothing was run', options?: TenantErrorOptions) {
    super('LBMT_CITUS_TENANT_NOT_SET', message, 500, false, options);
  }
}

/**
 * Citus tenant placement refused or failed: `LBMT_CITUS_PLACEMENT_ROLE` when the role is subject to
 * row level security (Citus's shard copies would then copy no row: the data is lost), and
 * `LBMT_CITUS_PLACEMENT_ROWS_LOST` when the tenant has fewer rows after the operation than before.
 */
export class CitusPlacementError extends TenantError {
  constructor(code: 'LBMT_CITUS_PLACEMENT_ROLE' | 'LBMT_CITUS_PLACEMENT_ROWS_LOST', message: string, options?: TenantErrorOptions) {
    super(code, message, 500, false, options);
  }
}

const INSUFFICIENT_PRIVILEGE = '42501';
/** Raised by linkbay.set_tenant (src/citus/schema.ts) when the tenant would not reach the workers. */
const SET_TENANT_REFUSED = 'LBM01';
const UNDEFINED_FUNCTION = '42883';

/**
 * Maps a driver error to a library error where one applies; anything else is returned unchanged.
 * RLS refusals (`new row violates row-level security policy`) become TenantIsolationError so the
 * edges can answer 403 without leaking the server's DETAIL.
 */
export function mapDatabaseError(error: unknown): unknown {
  if (error instanceof TenantError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = (error as { message?: unknown } | null)?.message;
  const step = (error as { batchStep?: unknown } | null)?.batchStep;
  if (code === SET_TENANT_REFUSED || (code === UNDEFINED_FUNCTION && step === 'prelude' && typeof message === 'string' && message.includes('set_tenant'))) {
    return new CitusTenantNotSetError(undefined, { cause: error });
  }
  if (code === INSUFFICIENT_PRIVILEGE && typeof message === 'string' && message.includes('row-level security')) {
    return new TenantIsolationError(message, { cause: error });
  }
  // Only the timeouts: a cancel by a person (pg_cancel_backend) or a shutdown says otherwise.
  if (code === '57014' && typeof message === 'string' && message.includes('statement timeout')) return new TenantLimitError('statement_timeout', { cause: error });
  if (code === '55P03' && typeof message === 'string' && message.includes('lock timeout')) return new TenantLimitError('lock_timeout', { cause: error });
  return error;
}
