import type { MigrationFile } from './policies.js';

/** `NNNNN-rest.sql` → `rest` (the piece's name, which stays when its number does). */
export function migrationPiece(fileName: string): string | undefined {
  return /^(\d+)-(.+)\.sql$/.exec(fileName)?.[2];
}

/**
 * The numbering scheme of generated migrations. @databases/pg-migrations identifies a migration by
 * its number: an applied number whose script changed is refused (`migration_file_edited`), and an
 * unapplied number below an applied one is refused (`migration_order_change`). So a file, once
 * applied, must keep its number and bytes, and anything new must take a number after every
 * existing one — whichever kind it is (a tenant table added to the config, or a migration a newer
 * version of this library adds under `sql/`).
 *
 * `files` is the canonical output (fresh install order); `existing` the names of the files already
 * in the migrations directory or applied to the database. A generated file whose piece (the name
 * after the number) is among them keeps that number; the others are appended, in canonical order,
 * after the highest existing number (and from `startIndex` at least: by default the lowest number
 * in `files`).
 */
export function appendAfterExisting(files: readonly MigrationFile[], existing: readonly string[], startIndex?: number): MigrationFile[] {
  const first = startIndex ?? Math.min(...files.map((file) => Number(/^\d+/.exec(file.name)?.[0] ?? 1)), 99_999);
  const kept = new Map<string, number>();
  let highest = first - 1;
  for (const name of existing) {
    const match = /^(\d+)-(.+)\.sql$/.exec(name);
    if (!match) continue;
    const index = Number(match[1]);
    highest = Math.max(highest, index);
    if (!kept.has(match[2]!)) kept.set(match[2]!, index);
  }
  let next = highest + 1;
  const out = files.map((file) => {
    const piece = migrationPiece(file.name)!;
    const index = kept.get(piece) ?? next++;
    return { name: `${String(index).padStart(5, '0')}-${piece}.sql`, sql: file.sql };
  });
  if (next - 1 > 99_999) throw new RangeError('migration numbers would pass 99999');
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
