import type { Node } from 'libpg-query';
import { analyzeQuery, walkExpressions } from './analyze.js';
import { lookupBlind, lookupGuarded } from './catalog.js';
import { conjuncts, names } from './expressions.js';
import { FactGroup, UNKNOWN_OUTPUTS, type ColumnTerm, type Item, type OutputColumns } from './item.js';
import type { Scope } from './scope.js';

// FROM clauses: each item of a level, and the join conditions attached to the sides they filter.

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
    if (!cte) refuseBlindView(scope, rv.schemaname, relname, rv.location);
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
    scope.defer(() => walkExpressions(join.quals, scope));
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
    scope.defer(() => walkExpressions([node.RangeTableSample.args, node.RangeTableSample.repeatable], scope));
    return buildFrom(node.RangeTableSample.relation, scope);
  }
  // Functions, XMLTABLE, JSON_TABLE: columns unknown, arguments searched for subqueries.
  const body = Object.values(node)[0] as { alias?: { aliasname?: string } } | undefined;
  scope.defer(() => walkExpressions(body, scope));
  const item = scope.add({ kind: 'opaque', name: body?.alias?.aliasname ?? functionAlias(node), location: -1 });
  return { items: [item], usingTerm: NO_USING };
}

/** A view over guarded tables without a tenant column of its own cannot be filtered: refused. */
export function refuseBlindView(scope: Scope, schema: string | undefined, relname: string, location: number | undefined): void {
  const view = lookupBlind(scope.analysis.catalog, schema, relname);
  if (!view) return;
  const name = `${view.schema}.${view.table}`;
  scope.analysis.refuse(`${name} is a view over the guarded table ${view.reads} without a tenant column to filter on`, location, name);
}

function functionAlias(node: Node): string | undefined {
  if (!('RangeFunction' in node)) return undefined;
  const first = node.RangeFunction.functions?.[0];
  const call = first && 'List' in first ? first.List.items?.[0] : undefined;
  const parts = call && 'FuncCall' in call ? names(call.FuncCall.funcname) : [];
  return parts[parts.length - 1];
}

