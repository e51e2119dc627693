import anyTest, { type TestFn } from 'ava';
import fc from 'fast-check';
import { tenantQuery } from '../src/index.js';
import { createQueryGuard, type TenantQueryGuard } from '../src/guard/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/**
 * Differential test of the guard against PostgreSQL itself. Random queries over two guarded
 * tables (no RLS: the app role sees every tenant's rows) with joins of every kind, derived
 * tables, CTEs, correlated subqueries, UNION, ORs, NOTs and filters on one side only, star
 * expansion under alias lists, names shadowed across LATERAL / plain subqueries / JOIN ON, and
 * string literals that lex differently under other settings. Each query
 * selects the tenant column of every guarded reference (a subquery's through string_agg). When the
 * guard says safe, the rows must hold the current tenant only; equivalently, a query that returns
 * another tenant's rows must have been called unsafe.
 */

const test = anyTest as TestFn<{ db: TestDatabase; guard: TenantQueryGuard }>;

const T0 = '10000000-0000-4000-8000-000000000000'; // the current tenant
const T1 = '20000000-0000-4000-8000-000000000000';
const T2 = '30000000-0000-4000-8000-000000000000';
const RUNS = Number(process.env.GUARD_PROPERTY_RUNS ?? 300);

const SCHEMA = `
  CREATE TABLE ga (tenant_id uuid NOT NULL, id int NOT NULL, k int NOT NULL, PRIMARY KEY (tenant_id, id));
  CREATE TABLE gb (tenant_id uuid NOT NULL, id int NOT NULL, a_id int NOT NULL, k int NOT NULL, PRIMARY KEY (tenant_id, id));
  INSERT INTO ga SELECT t::uuid, i, i % 2 FROM unnest(ARRAY['${T0}', '${T1}', '${T2}']) t, generate_series(1, 3) i;
  INSERT INTO gb SELECT t::uuid, i, 4 - i, (i + 1) % 2 FROM unnest(ARRAY['${T0}', '${T1}', '${T2}']) t, generate_series(1, 3) i;
`;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: SCHEMA });
  await db.superQuery(`GRANT SELECT ON ga, gb TO ${db.config.roles.app}`);
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config });
  t.context = { db, guard };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

type Table = 'ga' | 'gb';
const table = fc.constantFrom<Table>('ga', 'gb');

/** A comparison of `alias.tenant_id` with some tenant value (the current one or not). */
const tenantFilter = (alias: string) =>
  fc.constantFrom(
    `${alias}.tenant_id = $1::uuid`,
    `${alias}.tenant_id = $1::uuid`,
    `$1::uuid = ${alias}.tenant_id`,
    `${alias}.tenant_id = current_setting('app.tenant_id')::uuid`,
    `${alias}.tenant_id = '${T0}'`,
    `${alias}.tenant_id IN ($1::uuid)`,
    `${alias}.tenant_id = $2::uuid`,
    `${alias}.tenant_id = '${T1}'`,
    `${alias}.tenant_id <> $1::uuid`,
  );

/** `arbitrary` with probability `p`, else undefined. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>, p: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: Math.round(p * 100), arbitrary }, { weight: Math.round((1 - p) * 100), arbitrary: fc.constant(undefined) });

const pick = (aliases: readonly string[]) => fc.constantFrom(...aliases);

/** Two different aliases when there are two (tenant columns chained through a join). */
const pair = (aliases: readonly string[]) =>
  aliases.length < 2 ? pick(aliases).map((a) => [a, a] as const) : fc.shuffledSubarray([...aliases], { minLength: 2, maxLength: 2 }).map(([a, b]) => [a!, b!] as const);

/**
 * Lexing traps: string literals that end where a reader with other lexing rules would not see
 * them end (a backslash before the quote, E'' strings, dollar quotes, doubled quotes), so that a
 * tenant filter or an `OR true` is inside a string for one reader and outside it for the other.
 * The guard and the server must read them alike (settings that change lexing are refused).
 */
const lexingTrap = (alias: string): fc.Arbitrary<string> =>
  fc.constantFrom(
    // standard_conforming_strings on: 'a\' is a whole string (off: the string would run on to the next quote).
    `${alias}.k::text <> 'a\\' AND ${alias}.tenant_id = $1::uuid AND ${alias}.k::text <> ' OR true --'`,
    // E'' strings escape: E'a\\' is a\ (an escaped backslash), E'a\'' is a' .
    `${alias}.k::text <> E'a\\\\' AND ${alias}.tenant_id = $1::uuid AND ${alias}.k::text <> ' OR true --'`,
    `${alias}.k::text <> E'a\\'' AND ${alias}.tenant_id = $1::uuid`,
    `${alias}.k::text <> E'a\\' OR true OR ${alias}.k::text <> ' AND ${alias}.tenant_id = $1::uuid`,
    `${alias}.k::text <> $$a' AND ${alias}.tenant_id = $1::uuid AND ${alias}.k::text <> '$$`,
    `${alias}.k::text <> 'it''s' AND ${alias}.tenant_id = $1::uuid`,
    `${alias}.k::text <> U&'\\0041\\\\' AND ${alias}.tenant_id = $1::uuid AND ${alias}.k::text <> ' OR true --'`,
  );

const atom = (aliases: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 1, arbitrary: pick(aliases).chain(lexingTrap) },
    { weight: 2, arbitrary: pick(aliases).chain(tenantFilter) },
    { weight: 3, arbitrary: pair(aliases).map(([a, b]) => `${a}.tenant_id = ${b}.tenant_id`) },
    { weight: 2, arbitrary: fc.tuple(pick(aliases), pick(aliases)).map(([a, b]) => `${a}.k = ${b}.k`) },
    { weight: 1, arbitrary: pick(aliases).map((a) => `${a}.id > 1`) },
  );

/** A filter that binds the alias to the current tenant when $1 is the current tenant. */
const safeFilter = (alias: string): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constant(`${alias}.tenant_id = $1::uuid`) },
    { weight: 1, arbitrary: fc.constant(`${alias}.tenant_id = current_setting('app.tenant_id')::uuid`) },
    { weight: 1, arbitrary: fc.constant(`${alias}.tenant_id = '${T0}'`) },
  );

/**
 * A conjunction whose parts may be ORs and NOTs; most aliases also get a plain tenant filter, so
 * that a fair share of the queries is safe.
 */
const condition = (aliases: readonly string[]): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.array(
        fc.oneof(
          { weight: 6, arbitrary: atom(aliases) },
          { weight: 1, arbitrary: fc.tuple(atom(aliases), atom(aliases)).map(([a, b]) => `(${a} OR ${b})`) },
          { weight: 1, arbitrary: atom(aliases).map((a) => `NOT (${a})`) },
        ),
        { minLength: 0, maxLength: 2 },
      ),
      fc.tuple(...aliases.map((a) => sometimes(safeFilter(a), 0.7))),
    )
    .map(([parts, filters]) => {
      const all = [...parts, ...filters.filter((f): f is string => f !== undefined)];
      return all.length === 0 ? 'true' : all.join(' AND ');
    });

/** An ON condition; half the time it chains the tenant columns, as composite-key joins do. */
const joinCondition = (left: string, right: string, others: readonly string[] = []): fc.Arbitrary<string> =>
  fc.tuple(condition([...others, left, right]), fc.boolean()).map(([c, chain]) => (chain ? `${right}.tenant_id = ${left}.tenant_id AND ${c}` : c));

interface From {
  readonly sql: string;
  /** Aliases whose tenant column the select list shows. */
  readonly aliases: readonly string[];
  readonly with?: string;
}

const single = table.map((t): From => ({ sql: `${t} x`, aliases: ['x'] }));

const derived = fc.tuple(table, condition(['i'])).map(([t, c]): From => ({ sql: `(SELECT tenant_id, id, k FROM ${t} i WHERE ${c}) x`, aliases: ['x'] }));

const cte = fc.tuple(table, condition(['i'])).map(([t, c]): From => ({ with: `WITH c AS (SELECT tenant_id, id, k FROM ${t} i WHERE ${c})`, sql: 'c x', aliases: ['x'] }));

const joined = fc
  .tuple(fc.oneof(single, derived, cte), table, fc.constantFrom('JOIN', 'LEFT JOIN', 'RIGHT JOIN', 'FULL JOIN', ',', 'CROSS JOIN'), joinCondition('x', 'y'))
  .map(([left, t, kind, on]): From => {
    const right = `${t} y`;
    const sql = kind === ',' || kind === 'CROSS JOIN' ? `${left.sql}${kind === ',' ? ',' : ' CROSS JOIN'} ${right}` : `${left.sql} ${kind} ${right} ON ${on}`;
    return { with: left.with, sql, aliases: ['x', 'y'] };
  });

// Inner joins nested under outer ones and the other way round: an inner join's ON holds for what
// is joined to it through inner joins (and on the nullable side of an outer join), not beyond.
const threeWay = fc
  .tuple(table, table, table, joinCondition('x', 'y'), joinCondition('y', 'z', ['x']), fc.constantFrom('JOIN', 'LEFT JOIN', 'RIGHT JOIN'), fc.constantFrom('JOIN', 'LEFT JOIN', 'RIGHT JOIN'), fc.boolean())
  .map(([a, b, c, on1, on2, kind1, kind2, nested]): From =>
    nested
      ? { sql: `${c} z ${kind2} (${a} x ${kind1} ${b} y ON ${on1}) ON ${on2}`, aliases: ['x', 'y', 'z'] }
      : { sql: `${a} x ${kind1} ${b} y ON ${on1} ${kind2} ${c} z ON ${on2}`, aliases: ['x', 'y', 'z'] },
  );

/**
 * Star expansion: `(r).*` is as many columns as r has, so an alias list after it renames columns
 * the guard cannot count (x.tenant_id below is r's tenant_id, not the constant after the star).
 */
const starred = fc
  .tuple(table, condition(['x']), fc.constantFrom('$1::uuid', '$2::uuid'), fc.boolean())
  .map(([t, c, v, star]): From => {
    const row = `(SELECT 0 AS k, ${v} AS tenant_id) r`;
    const values = star ? `(r).*, $1::uuid` : `r.k, r.tenant_id, $1::uuid`;
    return { sql: `(SELECT ${values} FROM ${row}) s(k, tenant_id) JOIN ${t} x ON x.tenant_id = s.tenant_id AND ${c}`, aliases: ['x'] };
  });

/**
 * Scoping: inside a LATERAL item holding `c` = $2, a subquery names `c` while a sibling `c` holds
 * $1. PostgreSQL binds it to the sibling only when the subquery is LATERAL; a JOIN's ON never
 * sees the sibling. The guard must bind it where PostgreSQL does.
 */
const shadowed = fc
  .tuple(table, condition(['i']), fc.constantFrom('', 'LATERAL '), fc.boolean())
  .map(([t, c, lateral, viaJoin]): From => {
    const inner = viaJoin
      ? `SELECT y.* FROM (SELECT $1::uuid AS tenant_id) c, ga z JOIN ${t} y ON y.tenant_id = c.tenant_id AND z.tenant_id = y.tenant_id AND z.id = y.id`
      : `SELECT y.* FROM (SELECT $1::uuid AS tenant_id) c, ${lateral}(SELECT i.tenant_id, i.id, i.k FROM ${t} i WHERE i.tenant_id = c.tenant_id AND ${c}) y`;
    return { sql: `(SELECT $2::uuid AS tenant_id) c CROSS JOIN LATERAL (${inner}) x`, aliases: ['x'] };
  });

const from = fc.oneof(
  { weight: 3, arbitrary: single },
  { weight: 2, arbitrary: derived },
  { weight: 1, arbitrary: cte },
  { weight: 4, arbitrary: joined },
  { weight: 2, arbitrary: threeWay },
  { weight: 1, arbitrary: starred },
  { weight: 2, arbitrary: shadowed },
);

/** A correlated scalar subquery whose tenant ids are shown, or an EXISTS filter. */
const subquery = (aliases: readonly string[]) =>
  fc.tuple(table, condition([...aliases, 'z'])).map(([t, c]) => `(SELECT string_agg(DISTINCT z.tenant_id::text, ',') FROM ${t} z WHERE ${c})`);

// $1 is usually the current tenant and $2 another one, but not always: a verdict must hold for
// the values of each execution, not for the text alone.
const parameters = fc.tuple(fc.constantFrom(T0, T1), fc.constantFrom(T1, T1, T0));

const query = from.chain((f) =>
  fc
    .tuple(
      condition(f.aliases),
      sometimes(subquery(f.aliases), 0.35),
      sometimes(fc.tuple(table, condition([...f.aliases, 'w'])), 0.3),
      sometimes(fc.tuple(table, condition(['u'])), 0.3),
    )
    .map(([where, sub, exists, union]) => {
      const shown = f.aliases.map((a) => `${a}.tenant_id::text AS t_${a}`);
      if (sub) shown.push(`${sub} AS t_sub`);
      const filter = exists ? `${where} AND EXISTS (SELECT 1 FROM ${exists[0]} w WHERE ${exists[1]})` : where;
      const params = `$1::uuid AS p1, $2::uuid AS p2`;
      let sql = `${f.with ? `${f.with} ` : ''}SELECT ${params}, ${shown.join(', ')} FROM ${f.sql} WHERE ${filter}`;
      if (union && !sub && f.aliases.length === 1) {
        sql += ` UNION ALL SELECT $1::uuid, $2::uuid, u.tenant_id::text FROM ${union[0]} u WHERE ${union[1]}`;
      }
      return sql;
    }),
);

/** Tenant ids a result shows that are not the current tenant's. */
function foreignTenants(rows: ReadonlyArray<Record<string, unknown>>): string[] {
  const found = new Set<string>();
  for (const row of rows) {
    for (const [column, value] of Object.entries(row)) {
      if (!column.startsWith('t_') || value === null) continue;
      for (const id of String(value).split(',')) if (id !== T0) found.add(id);
    }
  }
  return [...found];
}

test(`guard verdicts agree with what PostgreSQL returns (${RUNS} random queries)`, async (t) => {
  const { db, guard } = t.context;
  const stats = { safe: 0, unsafeLeaking: 0, unsafeClean: 0, invalid: 0 };
  await fc.assert(
    fc.asyncProperty(query, parameters, async (sql, values) => {
      const violations = guard.inspect(sql, values, T0);
      let rows: Array<Record<string, unknown>>;
      try {
        rows = (await tenantQuery(db.appPool, T0, sql, values, { tenancy: db.config, prepare: false })).rows;
      } catch (error) {
        // FULL JOIN with a condition PostgreSQL cannot merge or hash, and the like.
        if (!/FULL JOIN|could not|operator does not exist/.test((error as Error).message)) throw error;
        stats.invalid += 1;
        return;
      }
      const leaked = foreignTenants(rows);
      if (violations.length === 0) {
        stats.safe += 1;
        if (leaked.length > 0) throw new Error(`the guard let through a query that returns other tenants' rows (${leaked.join(', ')}):\n${sql}\nwith ${JSON.stringify(values)}`);
      } else if (leaked.length > 0) {
        stats.unsafeLeaking += 1;
      } else {
        stats.unsafeClean += 1;
      }
    }),
    { numRuns: RUNS },
  );
  t.log(stats);
  // The generator must exercise both sides for the agreement to mean something.
  t.true(stats.safe >= RUNS / 10, `enough queries the guard calls safe (${stats.safe})`);
  t.true(stats.unsafeLeaking >= RUNS / 10, `enough queries that do leak (${stats.unsafeLeaking})`);
  t.true(stats.invalid <= RUNS / 5, `few invalid queries (${stats.invalid})`);
});
