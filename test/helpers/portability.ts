import { Readable } from 'node:stream';
import { PgTenantService, TenantAdminService, TenantDBPool, type Tenant } from '../../src/index.js';
import { TenantPortability } from '../../src/portability/index.js';
import { createTestDatabase, type TestDatabase } from './db.js';

/** Foreign keys, composite keys, an identity ALWAYS column, a generated column, and every type the issue names. */
export const PORTABILITY_SCHEMA = `
  CREATE TABLE accounts (
    tenant_id uuid NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL,
    profile jsonb,
    avatar bytea,
    balance numeric(40,10),
    ratio double precision,
    tags text[],
    scores integer[],
    joined_at timestamptz,
    born date,
    trial interval,
    name_length integer GENERATED ALWAYS AS (length(name)) STORED,
    PRIMARY KEY (tenant_id, id)
  );
  CREATE TABLE memberships (
    tenant_id uuid NOT NULL,
    account_id bigint NOT NULL,
    team text NOT NULL,
    note text,
    PRIMARY KEY (tenant_id, account_id, team),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
  );`;

export const PORTABILITY_TABLES = ['accounts', 'memberships'];

export interface PortabilityFixture {
  source: TestDatabase;
  target: TestDatabase;
  admin: TenantAdminService;
  pools: TenantDBPool;
  portability: TenantPortability;
  close(): Promise<void>;
}

export async function portabilityFixture(): Promise<PortabilityFixture> {
  const options = { schema: PORTABILITY_SCHEMA, tenancy: { tables: PORTABILITY_TABLES } };
  const [source, target] = await Promise.all([createTestDatabase(options), createTestDatabase(options)]);
  const admin = new TenantAdminService(source.adminPool, { tenancy: source.config });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(source.appPool, { tenancy: source.config }), sharedPool: source.appPool, tenancy: source.config });
  const portability = new TenantPortability({ pools, admin, tenancy: source.config });
  return {
    source,
    target,
    admin,
    pools,
    portability,
    close: async () => {
      await pools.closeAll();
      await Promise.all([source.drop(), target.drop()]);
    },
  };
}

let n = 0;
/**
 * A tenant with `accounts` accounts of awkward values (and NULLs), each in two teams; written as the
 * superuser (setup), so that the export is the only path under test.
 */
export async function seedTenant(f: PortabilityFixture, accounts: number): Promise<Tenant> {
  const tenant = await f.admin.createTenant({ slug: `p-${process.pid}-${++n}`, name: `P${n}` });
  await f.source.superQuery(
    `INSERT INTO accounts (tenant_id, name, profile, avatar, balance, ratio, tags, scores, joined_at, born, trial)
     SELECT $1,
            CASE WHEN i % 5 = 0 THEN repeat('große Länge ✓ ', 20000) ELSE 'name ' || i || E' \\t tab \\n newline \\\\ backslash "quote" 🎉 עברית' END,
            CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('n', i, 'f', 1.0000000000000001, 'u', 'ü\\u00e9😀', 'nested', jsonb_build_array(1, 'two', null, true)) END,
            CASE WHEN i % 3 = 0 THEN NULL ELSE decode(repeat(to_hex(i % 16), 2) || '00ff0a09', 'hex') || (SELECT string_agg(decode(lpad(to_hex(b), 2, '0'), 'hex'), ''::bytea) FROM generate_series(0, 255) b) END,
            CASE WHEN i % 6 = 0 THEN NULL WHEN i % 7 = 0 THEN 'NaN'::numeric ELSE 12345678901234567890.0123456789 * i END,
            CASE WHEN i % 8 = 0 THEN 'Infinity'::float8 WHEN i % 9 = 0 THEN '-0'::float8 ELSE 1 / (i + 0.3)::float8 END,
            CASE WHEN i % 2 = 0 THEN ARRAY['a', NULL, 'c,d', 'e"f', '{g}', ''] ELSE NULL END,
            ARRAY[i, -i, NULL],
            CASE WHEN i % 10 = 0 THEN 'infinity'::timestamptz ELSE '2024-02-29 23:59:59.123456+05:30'::timestamptz + i * interval '1 hour' END,
            CASE WHEN i % 3 = 1 THEN NULL ELSE '0044-03-15 BC'::date + i END,
            make_interval(years => i % 3, months => -1, days => i, secs => 4.789)
       FROM generate_series(1, $2::int) i`,
    [tenant.id, accounts],
  );
  await f.source.superQuery(
    `INSERT INTO memberships (tenant_id, account_id, team, note)
     SELECT a.tenant_id, a.id, t.team, CASE WHEN a.id % 2 = 0 THEN NULL ELSE 'note ' || a.id END
       FROM accounts a CROSS JOIN (VALUES ('red'), ('blue')) t(team) WHERE a.tenant_id = $1`,
    [tenant.id],
  );
  return tenant;
}

/** A digest of the tenant's rows computed by the server itself (superuser), independent of the export's. */
export interface ServerDigest {
  accounts: string | null;
  account_rows: number;
  memberships: string | null;
  membership_rows: number;
}

export async function serverDigest(db: TestDatabase, tenantId: string): Promise<ServerDigest> {
  const { rows } = await db.superQuery(
    `SELECT (SELECT md5(string_agg(a::text, E'\\n' ORDER BY a.id)) FROM accounts a WHERE tenant_id = $1) AS accounts,
            (SELECT count(*) FROM accounts WHERE tenant_id = $1)::int AS account_rows,
            (SELECT md5(string_agg(m::text, E'\\n' ORDER BY m.account_id, m.team)) FROM memberships m WHERE tenant_id = $1) AS memberships,
            (SELECT count(*) FROM memberships WHERE tenant_id = $1)::int AS membership_rows`,
    [tenantId],
  );
  return rows[0] as ServerDigest;
}

/** Reads a stream to the end as text. */
export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** A text as a stream of small chunks (lines and multi-byte characters split across chunks). */
export function chunked(text: string, size = 997): Readable {
  const bytes = Buffer.from(text, 'utf8');
  return Readable.from((function* () {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  })());
}

/** Rows of the tenant in the target, per table, counted as the superuser (sees everything). */
export async function targetCounts(db: TestDatabase): Promise<[number, number]> {
  const { rows } = await db.superQuery(`SELECT (SELECT count(*) FROM accounts)::int AS a, (SELECT count(*) FROM memberships)::int AS m`);
  return [rows[0].a, rows[0].m];
}
