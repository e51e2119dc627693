import type { A_Const, Node, TypeName } from 'libpg-query';
import { tryCanonicalTenantId, type TenantIdType } from '../tenant-id.js';
import { ALWAYS, type Candidate } from './verdict.js';

/** What expression analysis needs to know about the tenancy. */
export interface SourceContext {
  /** The tenant setting, lower case (GUC names are case-insensitive). */
  readonly setting: string;
  readonly tenantIdType: TenantIdType;
}

/** The top-level AND-ed parts of a condition; anything under OR or NOT stays one opaque part. */
export function conjuncts(node: Node | undefined, out: Node[] = []): Node[] {
  if (!node) return out;
  if ('BoolExpr' in node && node.BoolExpr.boolop === 'AND_EXPR') {
    for (const arg of node.BoolExpr.args ?? []) conjuncts(arg, out);
  } else {
    out.push(node);
  }
  return out;
}

/**
 * The equalities a conjunct asserts, as pairs of operands: `a = b`, `(a, b) = (c, d)` (element-wise)
 * and `a IN (b)` with a single element. `IS NOT DISTINCT FROM` is not one (NULL matches NULL).
 */
export function equalityPairs(node: Node): Array<readonly [Node, Node]> {
  if (!('A_Expr' in node)) return [];
  const expr = node.A_Expr;
  if (!isEqualsOperator(expr.name) || !expr.lexpr || !expr.rexpr) return [];
  if (expr.kind === 'AEXPR_OP') {
    const left = rowItems(expr.lexpr);
    const right = rowItems(expr.rexpr);
    if (left && right) {
      if (left.length !== right.length || !knownWidth(left) || !knownWidth(right)) return [];
      return left.map((l, i) => [l, right[i]!] as const);
    }
    return [[expr.lexpr, expr.rexpr]];
  }
  if (expr.kind === 'AEXPR_IN' && 'List' in expr.rexpr) {
    const items = expr.rexpr.List.items ?? [];
    return items.length === 1 ? [[expr.lexpr, items[0]!]] : [];
  }
  return [];
}

function isEqualsOperator(name: Node[] | undefined): boolean {
  if (!name || name.length === 0 || name.length > 2) return false;
  const op = stringOf(name[name.length - 1]);
  if (op !== '=') return false;
  return name.length === 1 || stringOf(name[0]) === 'pg_catalog';
}

function rowItems(node: Node): Node[] | undefined {
  return 'RowExpr' in node ? node.RowExpr.args ?? [] : undefined;
}

/**
 * Whether an expression is a star that PostgreSQL expands into as many columns as the row has:
 * `t.*`, `*`, `(expr).*`, `(expr).f.*`. In a select list, VALUES row or row constructor, every
 * position after it is unknown to the guard.
 */
export function isStarExpansion(node: Node | undefined): boolean {
  if (!node) return false;
  if ('ColumnRef' in node) {
    const fields = node.ColumnRef.fields ?? [];
    return fields.length > 0 && 'A_Star' in fields[fields.length - 1]!;
  }
  if ('A_Indirection' in node) return (node.A_Indirection.indirection ?? []).some((i) => 'A_Star' in i);
  return false;
}

/** A list of expressions whose width (number of columns) is known: no star expansion in it. */
export function knownWidth(list: readonly Node[] | undefined): boolean {
  return !(list ?? []).some((item) => isStarExpansion('ResTarget' in item ? item.ResTarget.val : item));
}

/** The `sval` of a String node. */
export function stringOf(node: Node | undefined): string | undefined {
  return node && 'String' in node ? node.String.sval ?? '' : undefined;
}

/** Names of a qualified-name list (`funcname`, `typeName.names`, `usingClause`, alias colnames). */
export function names(list: Node[] | undefined): string[] {
  const out: string[] = [];
  for (const n of list ?? []) {
    const s = stringOf(n);
    if (s !== undefined) out.push(s);
  }
  return out;
}

// Casts that keep a value whole. A type modifier may truncate (`varchar(3)`, `char` is `char(1)`):
// `$1::varchar(3)` checked as the tenant would be sent as another tenant's id.
const VALUE_PRESERVING_TYPES = new Set(['uuid', 'text', 'varchar', 'int8', 'int4', 'int2', 'numeric', 'bigint', 'integer', 'smallint']);

function isPreservingCast(type: TypeName | undefined): boolean {
  if (!type || (type.typmods && type.typmods.length > 0) || type.arrayBounds || type.setof || type.pct_type) return false;
  const parts = names(type.names);
  if (parts.length === 2 && parts[0] !== 'pg_catalog') return false;
  if (parts.length < 1 || parts.length > 2) return false;
  return VALUE_PRESERVING_TYPES.has(parts[parts.length - 1]!);
}

/**
 * The tenant value an expression stands for, if it is one: a bind parameter, a constant, or
 * `current_setting('<setting>'[, missing_ok])` (optionally in `NULLIF(..., '')` or a scalar
 * `(SELECT ...)`), each optionally cast to a type that keeps the value whole. A constant that is
 * not a valid tenant id stays a constant that matches no tenant.
 */
export function sourceCandidate(node: Node, context: SourceContext): Candidate | undefined {
  if ('TypeCast' in node) {
    return isPreservingCast(node.TypeCast.typeName) && node.TypeCast.arg ? sourceCandidate(node.TypeCast.arg, context) : undefined;
  }
  if ('ParamRef' in node) {
    const index = node.ParamRef.number ?? 0;
    return index > 0 ? { kind: 'param', index } : undefined;
  }
  if ('A_Const' in node) return literalCandidate(node.A_Const, context.tenantIdType);
  if ('FuncCall' in node) return isTenantSetting(node, context) ? ALWAYS : undefined;
  if ('A_Expr' in node && node.A_Expr.kind === 'AEXPR_NULLIF') {
    const { lexpr, rexpr } = node.A_Expr;
    if (!lexpr || !rexpr || !('A_Const' in rexpr) || !rexpr.A_Const.sval || (rexpr.A_Const.sval.sval ?? '') !== '') return undefined;
    return isTenantSetting(lexpr, context) ? ALWAYS : undefined;
  }
  if ('SubLink' in node && node.SubLink.subLinkType === 'EXPR_SUBLINK') {
    const select = node.SubLink.subselect;
    if (!select || !('SelectStmt' in select)) return undefined;
    const s = select.SelectStmt;
    if (s.fromClause?.length || s.whereClause || s.valuesLists || (s.op && s.op !== 'SETOP_NONE') || s.targetList?.length !== 1) return undefined;
    const target = s.targetList[0]!;
    const value = 'ResTarget' in target ? target.ResTarget.val : undefined;
    if (!value) return undefined;
    const inner = sourceCandidate(value, context);
    return inner?.kind === 'always' ? inner : undefined;
  }
  return undefined;
}

/** A constant in canonical spelling when it is a valid tenant id; otherwise as written (it then matches no tenant). */
function literalCandidate(c: A_Const, type: TenantIdType): Candidate | undefined {
  let raw: string | number;
  if (c.sval) raw = c.sval.sval ?? '';
  else if (c.ival) raw = c.ival.ival ?? 0;
  else if (c.fval) raw = c.fval.fval ?? '';
  else return undefined;
  if (type === 'text') return { kind: 'literal', value: String(raw) };
  return { kind: 'literal', value: tryCanonicalTenantId(raw, type) ?? `invalid:${String(raw)}` };
}

function isTenantSetting(node: Node, context: SourceContext): boolean {
  if (!('FuncCall' in node)) return false;
  const call = node.FuncCall;
  const fn = names(call.funcname);
  if (fn[fn.length - 1] !== 'current_setting' || (fn.length === 2 && fn[0] !== 'pg_catalog') || fn.length > 2) return false;
  if (call.agg_star || call.over || call.func_variadic) return false;
  const args = call.args ?? [];
  if (args.length < 1 || args.length > 2) return false;
  const name = args[0]!;
  return 'A_Const' in name && name.A_Const.sval?.sval?.toLowerCase() === context.setting;
}

/** The unqualified function name and its schema, lower case as the parser leaves it. */
export function functionName(node: Node): { schema: string | undefined; name: string } | undefined {
  if (!('FuncCall' in node)) return undefined;
  const parts = names(node.FuncCall.funcname);
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  return { schema: parts.length > 1 ? parts[parts.length - 2] : undefined, name };
}
