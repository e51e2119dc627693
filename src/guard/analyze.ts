import type { Node, SelectStmt, WithClause } from 'libpg-query';
import { analyzeDelete, analyzeInsert, analyzeMerge, analyzeUpdate } from './dml.js';
import { names } from './expressions.js';
import { buildFromList } from './from.js';
import { UNKNOWN_OUTPUTS, type OutputColumns } from './item.js';
import { combineSetOperation, renameOutputs, sameBindings, targetOutputs, unbound, valuesOutputs } from './outputs.js';
import { functionRefusal } from './refusals.js';
import { Scope } from './scope.js';

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
    const sortScope = new Scope(outer.analysis, outer);
    sortScope.seal();
    walkExpressions([select.sortClause, select.limitCount, select.limitOffset], sortScope);
    return combineSetOperation(select.op, left, right);
  }
  const scope = new Scope(outer.analysis, outer);
  if (select.valuesLists) {
    scope.seal();
    walkExpressions(select.valuesLists, scope);
    return valuesOutputs(select.valuesLists, scope);
  }
  buildFromList(select.fromClause, scope, select.whereClause);
  scope.seal();
  walkExpressions(
    [select.targetList, select.whereClause, select.groupClause, select.havingClause, select.windowClause, select.sortClause, select.distinctClause, select.limitCount, select.limitOffset],
    scope,
  );
  finishScope(scope);
  return targetOutputs(select.targetList ?? [], scope);
}

/** Analyses the derived tables not referenced yet and records the guarded references' checks. */
export function finishScope(scope: Scope): void {
  scope.seal();
  for (const item of scope.items) if (item.init.kind === 'derived') item.outputs();
  scope.requireGuardedFilters();
}

/** A scope holding the CTEs of `with` (each analysed once, in order), or `parent` when there are none. */
export function withScope(clause: WithClause | undefined, parent: Scope): Scope {
  if (!clause?.ctes?.length) return parent;
  const scope = new Scope(parent.analysis, parent);
  const ctes = clause.ctes.flatMap((node) => ('CommonTableExpr' in node ? [node.CommonTableExpr] : []));
  const bindings = ctes.map(() => ({ outputs: UNKNOWN_OUTPUTS }));
  // WITH RECURSIVE: every CTE of the list is visible to every other, also to earlier ones (a
  // forward reference, whose columns are then unknown here); a plain WITH sees only earlier ones.
  if (clause.recursive) ctes.forEach((cte, i) => scope.ctes.set(cte.ctename ?? '', bindings[i]!));
  ctes.forEach((cte, i) => {
    const name = cte.ctename ?? '';
    const colnames = names(cte.aliascolnames);
    const binding = bindings[i]!;
    const rename = (o: OutputColumns) => renameOutputs(o, colnames);
    const query = cte.ctequery;
    if (clause.recursive && query && 'SelectStmt' in query && query.SelectStmt.op === 'SETOP_UNION') {
      binding.outputs = recursiveFixpoint(query.SelectStmt, scope, binding, rename);
    } else {
      binding.outputs = rename(analyzeQuery(query, scope));
      scope.ctes.set(name, binding);
    }
  });
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

/**
 * Searches expressions for subqueries (each analysed as a level inside `scope`) and for function
 * calls the guard refuses. Only expression trees are passed here: FROM items are built separately.
 */
export function walkExpressions(node: unknown, scope: Scope): void {
  if (node === null || typeof node !== 'object') return;
  scope.analysis.spend(1);
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
