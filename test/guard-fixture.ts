import { TenantGuardError, withTenantTransaction, type TenantTransaction } from '../src/index.js';
import { createQueryGuard, type TenantQueryGuard } from '../src/guard/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/**
 * The database the attack tests run on: guarded tables (no RLS) holding rows of tenant A (the
 * current one) and tenant B, whose rows carry the marker `bsecret` so that any of them showing up
 * in a result is seen; an inheritance parent without a tenant column; the contrib extensions whose
 * functions run SQL. Statements run as the non-superuser app role; B's rows are compared as the
 * superuser before and after.
 */

export const A = '6f9619ff-8b86-4011-b42d-00c04fc964ff';
export const B = '0e1d2c3b-4a59-4867-8766-554433221100';

const SCHEMA = `
  CREATE EXTENSION tablefunc;
  CREATE EXTENSION dblink;
  CREATE EXTENSION xml2;
  CREATE TABLE invoices (tenant_id uuid NOT NULL, id int NOT NULL, amount int NOT NULL DEFAULT 0, note text, doc text,
                         PRIMARY KEY (tenant_id, id));
  CREATE TABLE customers (tenant_id uuid NOT NULL, id int NOT NULL, name text, PRIMARY KEY (tenant_id, id));
  CREATE TABLE audit_base (id int, event text);
  CREATE TABLE audit_tenant (tenant_id uuid NOT NULL) INHERITS (audit_base);
  CREATE VIEW audit_all AS SELECT id, event FROM audit_base;
  CREATE TYPE id_tenant AS (id int, tenant_id uuid);
  INSERT INTO invoices SELECT '${A}', i, 10 * i, 'anote' || i, '<a>anote' || i || '</a>' FROM generate_series(1, 4) i;
  INSERT INTO invoices SELECT '${B}', i, 20 * i, 'bsecret' || i, '<a>bsecret' || i || '</a>' FROM generate_series(1, 3) i;
  INSERT INTO customers SELECT '${A}', i, 'A-cust-' || i FROM generate_series(1, 30) i;
  INSERT INTO customers SELECT '${B}', i, 'bsecret-cust-' || i FROM generate_series(1, 30) i;
  INSERT INTO audit_tenant (id, event, tenant_id) VALUES (1, 'a-login', '${A}'), (2, 'bsecret-login', '${B}');
  ANALYZE invoices; ANALYZE customers;
`;

export interface GuardFixture {
  readonly db: TestDatabase;
  readonly guard: TenantQueryGuard;
}

export async function createGuardFixture(): Promise<GuardFixture> {
  const db = await createTestDatabase({ schema: SCHEMA });
  const app = db.config.roles.app;
  await db.superQuery(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${app}`);
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config });
  return { db, guard };
}

/** Every row of tenant B, as the superuser sees them (to compare before and after). */
export async function rowsOfB(db: TestDatabase): Promise<string> {
  const { rows } = await db.superQuery(
    `SELECT (SELECT json_agg(i ORDER BY id) FROM invoices i WHERE tenant_id = $1)::text AS invoices,
            (SELECT json_agg(c ORDER BY id) FROM customers c WHERE tenant_id = $1)::text AS customers,
            (SELECT json_agg(a ORDER BY id) FROM audit_tenant a WHERE tenant_id = $1)::text AS audit,
            (SELECT count(*) FROM invoices) AS n`,
    [B],
  );
  return JSON.stringify(rows[0]);
}

/** Whether a result shows anything of tenant B (every row of B carries the marker). */
export function showsB(rows: unknown): boolean {
  return JSON.stringify(rows).includes('bsecret');
}

export interface Attack {
  /** Statements run in order in one tenant-A transaction; the last is the attack. */
  readonly statements: readonly string[];
  readonly values?: readonly unknown[];
}

const statementsOf = (attack: Attack | string): Attack => (typeof attack === 'string' ? { statements: [attack] } : attack);

/**
 * Runs the attack without the guard, as the app role in a tenant-A transaction that is rolled
 * back: whether it read or changed anything of B. (The proof that each statement is an attack.)
 */
export async function leaksWithoutGuard(fixture: GuardFixture, input: Attack | string): Promise<boolean> {
  const attack = statementsOf(input);
  const before = await rowsOfB(fixture.db);
  class Rollback extends Error {
    constructor(readonly leaked: boolean) {
      super('rollback');
    }
  }
  try {
    await withTenantTransaction(
      fixture.db.appPool,
      A,
      async (tx) => {
        let rows: unknown = [];
        for (const sql of attack.statements) rows = (await tx.query(sql, valuesFor(sql, attack.values))).rows;
        throw new Rollback(showsB(rows) || (await rowsOfBIn(tx)) !== before);
      },
      { tenancy: fixture.db.config, prepare: false },
    );
  } catch (error) {
    if (error instanceof Rollback) return error.leaked;
    throw error;
  }
  return false;
}

/** B's rows as the app role sees them inside the transaction (no RLS on these tables). */
async function rowsOfBIn(tx: TenantTransaction): Promise<string> {
  const { rows } = await tx.query(
    `SELECT (SELECT json_agg(i ORDER BY id) FROM invoices i WHERE tenant_id = $1)::text AS invoices,
            (SELECT json_agg(c ORDER BY id) FROM customers c WHERE tenant_id = $1)::text AS customers,
            (SELECT json_agg(a ORDER BY id) FROM audit_tenant a WHERE tenant_id = $1)::text AS audit,
            (SELECT count(*) FROM invoices) AS n`,
    [B],
  );
  return JSON.stringify(rows[0]);
}

export interface GuardedOutcome {
  /** Statements the guard refused (TenantGuardError), by index. */
  readonly refused: number[];
  /** Rows of the last statement, when it ran. */
  readonly rows: unknown;
  /** Whether B's rows are unchanged afterwards (superuser check after COMMIT). */
  readonly bUnchanged: boolean;
}

/**
 * Runs the attack with the guard, for real, in a tenant-A transaction that commits: each
 * statement is tried; a refused one is recorded and the transaction goes on (nothing was sent).
 */
export async function runGuarded(fixture: GuardFixture, input: Attack | string): Promise<GuardedOutcome> {
  const attack = statementsOf(input);
  const before = await rowsOfB(fixture.db);
  const refused: number[] = [];
  let rows: unknown = [];
  await withTenantTransaction(
    fixture.db.appPool,
    A,
    async (tx) => {
      for (const [i, sql] of attack.statements.entries()) {
        try {
          rows = (await tx.query(sql, valuesFor(sql, attack.values))).rows;
        } catch (error) {
          if (!(error instanceof TenantGuardError)) throw error;
          refused.push(i);
        }
      }
    },
    { tenancy: fixture.db.config, guard: fixture.guard, prepare: false },
  );
  return { refused, rows, bUnchanged: (await rowsOfB(fixture.db)) === before };
}

/** The values a statement takes: as many of `values` (default [A, B]) as its highest `$n`. */
function valuesFor(sql: string, values: readonly unknown[] = [A, B]): unknown[] {
  const highest = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  return values.slice(0, highest);
}
