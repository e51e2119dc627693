import type { Item } from './item.js';

/**
 * The items of one query level by the names column references use, built once the level is
 * complete, so that resolving a reference does not scan every item (a 300-table join would
 * otherwise resolve each of its ~600 references against 300 items, in every JOIN's ON).
 */
export class LevelIndex {
  /** Items by the name a qualified reference uses (alias, else relation or CTE name). */
  readonly byName = new Map<string, Item[]>();
  /** Guarded tables by the name their tenant column goes by here. */
  readonly byTenantColumn = new Map<string, Item[]>();
  /** Subqueries and CTE references. */
  readonly derived: Item[] = [];

  constructor(items: readonly Item[]) {
    for (const item of items) {
      if (item.init.name !== undefined) push(this.byName, item.init.name, item);
      const tenant = item.visibleTenantColumn();
      if (tenant !== undefined) push(this.byTenantColumn, tenant, item);
      if (item.init.kind === 'derived') this.derived.push(item);
    }
  }
}

function push(map: Map<string, Item[]>, key: string, item: Item): void {
  const list = map.get(key);
  if (list) list.push(item);
  else map.set(key, [item]);
}
