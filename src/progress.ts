/**
 * Progress of a long CLI command on stderr: a line redrawn in place on a terminal, plain lines
 * (at most one every `everyMs`, and the last) otherwise, so logs stay readable.
 */
export class Progress {
  private last = 0;
  private drawn = false;

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly everyMs = 2000,
  ) {}

  /** Reports the current state; `final` forces a line (and ends the redrawn one). */
  update(text: string, final = false): void {
    const now = Date.now();
    if (this.tty) {
      this.write(`\r\x1b[2K${text}${final ? '\n' : ''}`);
      this.drawn = !final;
      return;
    }
    if (!final && now - this.last < this.everyMs) return;
    this.last = now;
    this.write(`${text}\n`);
  }

  /** A line of its own (a step), ending a redrawn one first. */
  line(text: string): void {
    if (this.tty && this.drawn) this.write('\n');
    this.drawn = false;
    this.write(`${text}\n`);
  }
}

/** `12.3 MB`, for progress lines. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}
