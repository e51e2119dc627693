import type { Node } from 'libpg-query';
import { isStarExpansion, knownWidth, names } from './expressions.js';
import { bothOf, eitherOf, UNKNOWN_OUTPUTS, type Item, type OutputColumn, type OutputColumns } from './item.js';
import type { Scope } from './scope.js';
import { candidateKey } from './verdict.js';

// What the columns a query returns are known to hold: a select list, a set operation, VALUES.

export function sameBindings(a: OutputColumns, b: OutputColumns): boolean {
  if (a.columns.length !== b.columns.length) return false;
  const keys = (c: OutputColumn) => c.candidates.map(candidateKey).sort().join(',');
  return a.columns.every((c, i) => keys(c) === keys(b.columns[i]!));
}

export function unbound(o: OutputColumns): OutputColumns {
  return { columns: o.columns.map((c) => ({ name: c.name, candidates: [] })), exact: o.exact };
}

export function renameOutputs(o: OutputColumns, colnames: readonly string[]): OutputColumns {
  if (colnames.length === 0) return o;
  if (!o.exact) return { columns: colnames.map((name) => ({ name, candidates: [] })), exact: false };
  return { columns: o.columns.map((c, i) => (i < colnames.length ? { name: colnames[i], candidates: c.candidates } : c)), exact: true };
}

export function combineSetOperation(op: string, left: OutputColumns, right: OutputColumns): OutputColumns {
  if (op === 'SETOP_EXCEPT') return left;
  if (!left.exact || !right.exact || left.columns.length !== right.columns.length) return unbound({ columns: left.columns, exact: false });
  const combine = op === 'SETOP_INTERSECT' ? bothOf : eitherOf;
  return { columns: left.columns.map((c, i) => ({ name: c.name, candidates: combine(c.candidates, right.columns[i]!.candidates) })), exact: true };
}

/** A VALUES list as a derived table: a column is known when every row gives the same tenant value. */
export function valuesOutputs(rows: readonly Node[], scope: Scope): OutputColumns {
  const lists = rows.map((row) => ('List' in row ? row.List.items ?? [] : []));
  if (!lists.every((list) => knownWidth(list))) return UNKNOWN_OUTPUTS;
  const width = lists[0]?.length ?? 0;
  const columns: OutputColumn[] = [];
  for (let i = 0; i < width; i += 1) {
    let candidates: OutputColumn['candidates'] | undefined;
    for (const list of lists) {
      const value = list[i];
      const term = value && scope.term(value);
      const here = term ? scope.valueCandidates(term) : [];
      candidates = candidates === undefined ? here : eitherOf(candidates, here);
    }
    columns.push({ name: `column${i + 1}`, candidates: candidates ?? [] });
  }
  return { columns, exact: true };
}

/** Output columns of a select list / RETURNING list, with what each is known to hold. */
export function targetOutputs(targets: readonly Node[], scope: Scope): OutputColumns {
  const columns: OutputColumn[] = [];
  let exact = true;
  for (const target of targets) {
    if (!('ResTarget' in target)) continue;
    const { name, val } = target.ResTarget;
    const fields = val && 'ColumnRef' in val ? val.ColumnRef.fields ?? [] : undefined;
    if (fields && fields.length > 0 && 'A_Star' in fields[fields.length - 1]!) {
      const qualifier = fields.length >= 2 ? names(fields.slice(0, -1)).at(-1) : undefined;
      const expanded = scope.items.filter((item) => (qualifier === undefined ? !item.init.joinAlias : !item.hidden && item.init.name === qualifier));
      for (const item of expanded) {
        const part = starOutputs(item, scope);
        columns.push(...part.columns);
        exact &&= part.exact;
      }
      if (scope.mergedColumns || expanded.length === 0) exact = false;
      continue;
    }
    if (isStarExpansion(val)) {
      // `(expr).*`: as many columns as the row has, which the guard does not know.
      exact = false;
      continue;
    }
    const term = val ? scope.term(val) : undefined;
    columns.push({ name: name ?? implicitName(val), candidates: term ? scope.valueCandidates(term) : [] });
  }
  return { columns, exact };
}

function starOutputs(item: Item, scope: Scope): OutputColumns {
  if (item.init.kind === 'derived') {
    const own = item.outputs();
    return {
      columns: own.columns.map((c) => ({ name: c.name, candidates: c.name === undefined ? c.candidates : scope.valueCandidates(scope.columnTerm(item, c.name)) })),
      exact: own.exact,
    };
  }
  const tenant = item.visibleTenantColumn();
  if (!item.guarded || tenant === undefined) return UNKNOWN_OUTPUTS;
  return { columns: [{ name: tenant, candidates: scope.valueCandidates(scope.columnTerm(item, item.guarded.tenantColumn)) }], exact: false };
}

function implicitName(val: Node | undefined): string | undefined {
  if (!val) return undefined;
  if ('ColumnRef' in val) return names(val.ColumnRef.fields).at(-1);
  if ('TypeCast' in val) return implicitName(val.TypeCast.arg);
  if ('FuncCall' in val) return names(val.FuncCall.funcname).at(-1);
  return undefined;
}

