import pg from 'pg';
import type { TenantKey } from './cache.js';

/** Channel the registry trigger (sql/00001-tenants.sql) notifies on. */
export const TENANT_CHANGES_CHANNEL = 'linkbay_tenants';

export interface TenantChange {
  readonly op: 'INSERT' | 'UPDATE' | 'DELETE';
  readonly id: string;
  /** Every cache key the change may have made stale (id, old and new slug and domain). */
  readonly keys: TenantKey[];
}

/** What a listener invalidates: TenantCacheService fits. */
export interface Invalidatable {
  invalidate(tenantId: string, keys?: Iterable<TenantKey>): void;
  clear(): void;
}

export interface TenantChangeListenerOptions {
  /** URL of any role that may connect; LISTEN needs no privilege. Not a PgBouncer URL in transaction mode. */
  connectionString: string;
  /** Usually a TenantCacheService. */
  target: Invalidatable;
  /** Default 100 ms, doubled up to `maxReconnectDelayMs` while the server is away. */
  reconnectDelayMs?: number;
  /** Default 5_000. */
  maxReconnectDelayMs?: number;
  /** Observations: connected (again), lost, a change applied. */
  onEvent?: (event: { type: 'connected' | 'disconnected' | 'change'; change?: TenantChange; error?: unknown }) => void;
}

/**
 * Keeps a cache coherent across app instances without Redis: a dedicated connection LISTENs on
 * the registry's channel; each NOTIFY drops the tenant's entries. When the connection is lost it
 * reconnects with backoff, LISTENs again and flushes the whole cache, because notifications sent
 * while it was away are gone (PostgreSQL does not queue them for absent listeners).
 *
 * @example
 * const listener = await TenantChangeListener.start({ connectionString: process.env.APP_DATABASE_URL!, target: tenants });
 * // on shutdown
 * await listener.stop();
 */
export class TenantChangeListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private delay: number;
  private everConnected = false;
  private connecting: Promise<void> | undefined;

  private constructor(private readonly options: TenantChangeListenerOptions) {
    this.delay = options.reconnectDelayMs ?? 100;
  }

  /** Connects and LISTENs; resolves once notifications are being received. */
  static async start(options: TenantChangeListenerOptions): Promise<TenantChangeListener> {
    const listener = new TenantChangeListener(options);
    await listener.connect();
    return listener;
  }

  /** The backend pid of the listening connection (for tests and diagnostics). */
  get processId(): number | undefined {
    return (this.client as unknown as { processID?: number } | undefined)?.processID;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private connect(): Promise<void> {
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.connectionString });
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
      if (this.stopped) return;
      this.options.onEvent?.({ type: 'disconnected', error });
      this.scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (message) => {
      if (message.channel !== TENANT_CHANGES_CHANNEL) return;
      const change = parseChange(message.payload);
      if (!change) {
        // A payload we cannot read: forget everything rather than keep a stale tenant.
        this.options.target.clear();
        return;
      }
      this.options.target.invalidate(change.id, change.keys);
      this.options.onEvent?.({ type: 'change', change });
    });
    await client.connect();
    await client.query(`LISTEN ${TENANT_CHANGES_CHANNEL}`);
    if (this.stopped) {
      await client.end();
      return;
    }
    this.client = client;
    // After a reconnect, changes made while we were away were never delivered to us.
    if (this.everConnected) this.options.target.clear();
    this.everConnected = true;
    this.delay = this.options.reconnectDelayMs ?? 100;
    this.options.onEvent?.({ type: 'connected' });
  }

  private scheduleReconnect(): void {
    // Stale answers are worse than slow ones: flush now, not only once we are back.
    this.options.target.clear();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.connect().catch((error) => {
        this.options.onEvent?.({ type: 'disconnected', error });
        this.delay = Math.min(this.delay * 2, this.options.maxReconnectDelayMs ?? 5_000);
        this.scheduleReconnect();
      });
    }, this.delay);
    this.timer.unref();
  }
}

function parseChange(payload: string | undefined): TenantChange | undefined {
  try {
    const data = JSON.parse(payload ?? '') as { op: TenantChange['op']; id: string; slugs?: Array<string | null>; domains?: Array<string | null> };
    if (typeof data.id !== 'string') return undefined;
    const keys: TenantKey[] = [`id:${data.id}`];
    for (const slug of data.slugs ?? []) if (slug) keys.push(`slug:${slug}`);
    for (const domain of data.domains ?? []) if (domain) keys.push(`domain:${domain}`);
    return { op: data.op, id: data.id, keys };
  } catch {
    return undefined;
  }
}
