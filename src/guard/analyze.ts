import type { Node, SelectStmt, WithClause } from 'libpg-query';
import { lookupGuarded } from './catalog.js';
import { analyzeDelete, analyzeInsert, analyzeMerge, analyzeUpdate } from './dml.js';
import { conjuncts, names } from './expressions.js';
import { functionRefusal } from './refusals.js';
import { bothOf, eitherOf, FactGroup, Scope, UNKNOWN_OUTPUTS, type ColumnTerm, type Item, type OutputColumn, type OutputColumns } from './scope.js';

/**
 * The walk from a statement's AST to its verdict: every query level becomes a Scope, every
 * reference to a guarded table must have its tenant column bound in its own level (scope.ts), and
 * every expression is searched for subqueries (their own levels) and refused functions.
 */

/** Analyses any query that can appear as a subquery, CTE or statement; returns its output columns. */
export function analyzeQuery(node: Node | undefined, parent: Scope): OutputColumns {
  if (!node) return UNKNOWN_OUTPUTS;
  if ('SelectStmt' in node) return analyzeSelect(node.SelectStmt, parent);
  if ('InsertStmt' in node) return analyzeInsert(node.InsertStmt, parent);
  if ('UpdateStmt' in node) return analyzeUpdate(node.UpdateStmt, parent);
  if ('DeleteStmt' in node) return analyzeDelete(node.DeleteStmt, parent);
  if ('MergeStmt' in node) return analyzeMerge(node.MergeStmt, parent);
  parent.analysis.refuse(`${Object.keys(node)[0]} is not a query the guard can check`, undefined);
  return UNKNOWN_OUTPUTS;
}

export function analyzeSelect(select: SelectStmt, parent: Scope): OutputColumns {
  const outer = withScope(select.withClause, parent);
  if (select.op && select.op !== 'SETOP_NONE') {
    const left = select.larg ? analyzeSelect(select.larg, outer) : UNKNOWN_OUTPUTS;
    const right = select.rarg ? analyzeSelect(select.rarg, outer) : UNKNOWN_OUTPUTS;
    walkExpressions([select.sortClause, select.limitCount, select.limitOffset], new Scope(outer.analysis, outer));
    return combineSetOperation(select.op, left, right);
  }
  const scope = new Scope(outer.analysis, outer);
  if (select.valuesLists) {
    walkExpressions(select.valuesLists, scope);
    return valuesOutputs(select.valuesLists, scope);
  }
  for (const from of select.fromClause ?? []) buildFrom(from, scope);
  const where = new FactGroup(scope, conjuncts(select.whereClause));
  for (const item of scope.items) item.groups.push(where);
  walkExpressions(
    [select.targetList, select.whereClause, select.groupClause, select.havingClause, select.windowClause, select.sortClause, select.distinctClause, select.limitCount, select.limitOffset],
    scope,
  );
  finishScope(scope);
  return targetOutputs(select.targetList ?? [], scope);
}

/** Analyses the derived tables not referenced yet and records the guarded references' checks. */
export function finishScope(scope: Scope): void {
  for (const item of scope.items) if (item.init.kind === 'derived') item.outputs();
  scope.requireGuardedFilters();
}

/** A scope holding the CTEs of `with` (each analysed once, in order), or `parent` when there are none. */
export function withScope(clause: WithClause | undefined, parent: Scope): Scope {
  if (!clause?.ctes?.length) return parent;
  const scope = new Scope(parent.analysis, parent);
  for (const node of clause.ctes) {
    if (!('CommonTableExpr' in node)) continue;
    const cte = node.CommonTableExpr;
    const name = cte.ctename ?? '';
    const colnames = names(cte.aliascolnames);
    const binding = { outputs: UNKNOWN_OUTPUTS };
    const rename = (o: OutputColumns) => renameOutputs(o, colnames);
    const query = cte.ctequery;
    if (clause.recursive && query && 'SelectStmt' in query && query.SelectStmt.op === 'SETOP_UNION') {
      scope.ctes.set(name, binding);
      binding.outputs = recursiveFixpoint(query.SelectStmt, scope, binding, rename);
    } else {
      binding.outputs = rename(analyzeQuery(query, scope));
      scope.ctes.set(name, binding);
    }
  }
  return scope;
}

/**
 * A recursive CTE's columns are bound when the non-recursive branch binds them and the recursive
 * branch keeps them bound assuming its own input is (induction). Trial runs find that assumption;
 * the last run, with an assumption that held, is the one recorded.
 */
function recursiveFixpoint(
  select: SelectStmt,
  scope: Scope,
  binding: { outputs: OutputColumns },
  rename: (o: OutputColumns) => OutputColumns,
): OutputColumns {
  const analysis = scope.analysis;
  const mark = analysis.mark();
  let assumed = select.larg ? rename(analyzeSelect(select.larg, scope)) : UNKNOWN_OUTPUTS;
  analysis.rollback(mark);
  for (let round = 0; round < 4; round += 1) {
    binding.outputs = assumed;
    const result = rename(analyzeSelect(select, scope));
    analysis.rollback(mark);
    if (sameBindings(result, assumed)) break;
    assumed = round === 3 ? unbound(result) : result;
  }
  binding.outputs = assumed;
  return rename(analyzeSelect(select, scope));
}

function sameBindings(a: OutputColumns, b: OutputColumns): boolean {
  if (a.columns.length !== b.columns.length) return false;
  return a.columns.every((c, i) => c.candidates.length === b.columns[i]!.candidates.length);
}

function unbound(o: OutputColumns): OutputColumns {
  return { columns: o.columns.map((c) => ({ name: c.name, candidates: [] })), exact: o.exact };
}

function renameOutputs(o: OutputColumns, colnames: readonly string[]): OutputColumns {
  if (colnames.length === 0) return o;
  if (!o.exact) return { columns: colnames.map((name) => ({ name, candidates: [] })), exact: false };
  return { columns: o.columns.map((c, i) => (i < colnames.length ? { name: colnames[i], candidates: c.candidates } : c)), exact: true };
}

function combineSetOperation(op: string, left: OutputColumns, right: OutputColumns): OutputColumns {
  if (op === 'SETOP_EXCEPT') return left;
  if (!left.exact || !right.exact || left.columns.length !== right.columns.length) return unbound({ columns: left.columns, exact: false });
  const combine = op === 'SETOP_INTERSECT' ? bothOf : eitherOf;
  return { columns: left.columns.map((c, i) => ({ name: c.name, candidates: combine(c.candidates, right.columns[i]!.candidates) })), exact: true };
}

/** A VALUES list as a derived table: a column is known when every row gives the same tenant value. */
function valuesOutputs(rows: readonly Node[], scope: Scope): OutputColumns {
  const lists = rows.map((row) => ('List' in row ? row.List.items ?? [] : []));
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

interface FromResult {
  readonly items: readonly Item[];
  /** The column a `USING (col)` join above this node compares. */
  usingTerm(column: string): ColumnTerm | undefined;
}

const NO_USING = () => undefined;

/** Adds the FROM items of `node` to `scope`, attaching each join's ON to the sides it filters. */
export function buildFrom(node: Node, scope: Scope): FromResult {
  const analysis = scope.analysis;
  if ('RangeVar' in node) {
    const rv = node.RangeVar;
    const relname = rv.relname ?? '';
    const alias = rv.alias?.aliasname;
    const colnames = names(rv.alias?.colnames);
    const cte = rv.schemaname === undefined ? scope.lookupCte(relname) : undefined;
    const item = cte
      ? scope.add({ kind: 'derived', name: alias ?? relname, location: rv.location ?? -1, colnames, outputs: () => cte.outputs })
      : scope.add({
          kind: 'table',
          name: alias ?? relname,
          location: rv.location ?? -1,
          relation: alias === undefined ? { schema: rv.schemaname, relname } : undefined,
          guarded: lookupGuarded(analysis.catalog, rv.schemaname, relname),
          colnames,
        });
    return { items: [item], usingTerm: (c) => scope.columnTerm(item, item.columnKey(c)) };
  }
  if ('RangeSubselect' in node) {
    const sub = node.RangeSubselect;
    let state: 'new' | 'running' | 'done' = 'new';
    let result: OutputColumns = UNKNOWN_OUTPUTS;
    const outputs = () => {
      if (state === 'new') {
        state = 'running';
        result = analyzeQuery(sub.subquery, scope);
        state = 'done';
      }
      return result;
    };
    const item = scope.add({ kind: 'derived', name: sub.alias?.aliasname, location: -1, colnames: names(sub.alias?.colnames), outputs });
    return { items: [item], usingTerm: (c) => scope.columnTerm(item, c) };
  }
  if ('JoinExpr' in node) {
    const join = node.JoinExpr;
    const left = join.larg ? buildFrom(join.larg, scope) : { items: [], usingTerm: NO_USING };
    const right = join.rarg ? buildFrom(join.rarg, scope) : { items: [], usingTerm: NO_USING };
    const using = names(join.usingClause);
    const given: Array<readonly [ColumnTerm, ColumnTerm]> = [];
    for (const column of using) {
      const a = left.usingTerm(column);
      const b = right.usingTerm(column);
      if (a && b) given.push([a, b]);
    }
    if (using.length > 0 || join.isNatural) scope.mergedColumns = true;
    const group = new FactGroup(scope, conjuncts(join.quals), given);
    const type = join.jointype ?? 'JOIN_INNER';
    const filtered = type === 'JOIN_INNER' ? [...left.items, ...right.items] : type === 'JOIN_LEFT' ? right.items : type === 'JOIN_RIGHT' ? left.items : [];
    for (const item of filtered) item.groups.push(group);
    walkExpressions(join.quals, scope);
    const items = [...left.items, ...right.items];
    const joinAlias = join.alias?.aliasname ?? join.join_using_alias?.aliasname;
    // An aliased join hides the names inside it; its own columns are not tracked.
    if (join.alias?.aliasname) for (const item of items) item.hidden = true;
    if (joinAlias) scope.add({ kind: 'opaque', name: joinAlias, location: -1, joinAlias: true });
    const side = type === 'JOIN_RIGHT' ? right : left;
    return {
      items,
      usingTerm: (c) => (using.includes(c) && type !== 'JOIN_FULL' ? side.usingTerm(c) : undefined),
    };
  }
  if ('RangeTableSample' in node && node.RangeTableSample.relation) {
    walkExpressions([node.RangeTableSample.args, node.RangeTableSample.repeatable], scope);
    return buildFrom(node.RangeTableSample.relation, scope);
  }
  // Functions, XMLTABLE, JSON_TABLE: columns unknown, arguments searched for subqueries.
  const body = Object.values(node)[0] as { alias?: { aliasname?: string } } | undefined;
  walkExpressions(body, scope);
  const item = scope.add({ kind: 'opaque', name: body?.alias?.aliasname ?? functionAlias(node), location: -1 });
  return { items: [item], usingTerm: NO_USING };
}

function functionAlias(node: Node): string | undefined {
  if (!('RangeFunction' in node)) return undefined;
  const first = node.RangeFunction.functions?.[0];
  const call = first && 'List' in first ? first.List.items?.[0] : undefined;
  const parts = call && 'FuncCall' in call ? names(call.FuncCall.funcname) : [];
  return parts[parts.length - 1];
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

/**
 * Searches expressions for subqueries (each analysed as a level inside `scope`) and for function
 * calls the guard refuses. Only expression trees are passed here: FROM items are built separately.
 */
export function walkExpressions(node: unknown, scope: Scope): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const child of node) walkExpressions(child, scope);
    return;
  }
  for (const key in node) {
    const value = (node as Record<string, unknown>)[key];
    if (value === null || typeof value !== 'object') continue;
    if (key === 'SubLink') {
      const link = value as { testexpr?: unknown; subselect?: Node };
      walkExpressions(link.testexpr, scope);
      analyzeQuery(link.subselect, scope);
    } else if (key === 'SelectStmt') {
      analyzeSelect(value as SelectStmt, scope);
    } else {
      if (key === 'FuncCall') {
        const refusal = functionRefusal(value as Parameters<typeof functionRefusal>[0], scope.analysis.source.setting);
        if (refusal) scope.analysis.refuse(refusal, (value as { location?: number }).location);
      }
      walkExpressions(value, scope);
    }
  }
}
