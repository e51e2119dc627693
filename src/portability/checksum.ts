import { createHash, type Hash } from 'node:crypto';

export interface TableDigest {
  readonly name: string;
  readonly rows: number;
  /** SHA-256 (hex) of the table's rows, each row's canonical text followed by `\n`, in file order. */
  readonly sha256: string;
}

export interface ExportTrailer {
  readonly end: true;
  readonly tables: readonly TableDigest[];
}

/**
 * Counts and hashes one table's rows as they stream by. The text hashed is the row as COPY writes
 * it under the pinned settings, so two exports of the same rows (ordered by the primary key) have
 * the same digest whatever database they come from: the round trip is compared by it.
 */
export class RowDigest {
  private readonly hash: Hash = createHash('sha256');
  rows = 0;

  constructor(readonly name: string) {}

  /** `rows` rows at once: `text` is their text, each followed by `\n` (one hash update per chunk). */
  addMany(text: string | Buffer, rows: number): void {
    this.hash.update(text);
    this.rows += rows;
  }

  finish(): TableDigest {
    return { name: this.name, rows: this.rows, sha256: this.hash.digest('hex') };
  }
}
