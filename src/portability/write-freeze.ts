import { TenantError } from '../errors.js';
import { connectClient } from '../client-hygiene.js';
import type { TenantClient, TenantPool } from '../pool.js';
import { WRITE_FREEZE_SQL } from '../write-gate.js';

/**
 * A move's hold on the tenant's write key in the database that serves the tenant now
 * (src/write-gate.ts): taken after the job records `frozen`, held until the switch has settled.
 * Taking it waits (up to `timeoutMs`) for the tenant's running transactions there to end; meanwhile
 * and afterwards new ones are READ ONLY. It is an xact-level lock in a transaction kept open on a
 * client of its own: it ends with that transaction or that connection (a crash), never later.
 */
export class WriteFreeze {
  private lostError: Error | undefined;
  private readonly onError = (error: Error) => (this.lostError ??= error);

  private constructor(private readonly client: TenantClient) {
    client.on?.('error', this.onError);
  }

  static async take(pool: TenantPool, tenantId: string, timeoutMs: number): Promise<WriteFreeze> {
    const client = await connectClient(pool);
    const freeze = new WriteFreeze(client);
    try {
      // Idle in transaction for as long as the copy takes: no idle timeout may end it half-way (nor a
      // role's lock_timeout the wait for the tenant's transactions). Keepalives short, so that a
      // runner whose host vanished (no FIN) frees the tenant within about a minute, not two hours.
      await client.query(
        `BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = ${Math.trunc(timeoutMs)}; ` +
          `SET LOCAL tcp_keepalives_idle = 30; SET LOCAL tcp_keepalives_interval = 10; SET LOCAL tcp_keepalives_count = 3`,
      );
      await client.query(WRITE_FREEZE_SQL, [tenantId]);
      await client.query('SET LOCAL statement_timeout = 0');
      return freeze;
    } catch (error) {
      await freeze.release();
      if ((error as { code?: string }).code === '57014') {
        throw new TenantError('LBMT_MOVE_WRITES_RUNNING', `the tenant's transactions were still running ${timeoutMs} ms after its writes were frozen; nothing was copied`, 503, true, { cause: error });
      }
      throw error;
    }
  }

  /** Undefined while the key is still held; the error that ended it otherwise (asks the server). */
  async lost(): Promise<Error | undefined> {
    if (this.lostError) return this.lostError;
    try {
      await this.client.query('SELECT 1');
    } catch (error) {
      this.lostError ??= error as Error;
    }
    return this.lostError;
  }

  /** Ends the transaction (writes allowed again there) and returns the client, or destroys it. */
  async release(): Promise<void> {
    let failure = this.lostError;
    if (!failure) await this.client.query('ROLLBACK').catch((error: Error) => (failure = error));
    this.client.removeListener?.('error', this.onError);
    this.client.release(failure ?? undefined);
  }
}
