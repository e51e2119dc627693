import { StringDecoder } from 'node:string_decoder';
import { ImportTooLargeError } from './errors.js';

/**
 * The lines of a byte stream (an HTTP body, a file), read as they arrive: one line held at a time
 * plus what one chunk brings, so memory stays bounded by the longest row, not the file. Past
 * `maxBytes` it throws ImportTooLargeError and reads no further.
 */
export class LineReader {
  private readonly iterator: AsyncIterator<Buffer | string>;
  private readonly decoder = new StringDecoder('utf8');
  private queue: string[] = [];
  private position = 0;
  private carry = '';
  private done = false;
  private back: string | undefined;
  bytes = 0;
  /** Whether the last line ended with `\n` (a file cut short usually does not). */
  endedWithNewline = true;

  constructor(source: AsyncIterable<Buffer | string>, private readonly maxBytes = Infinity) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** The next line without its `\n`, or undefined at the end. */
  async next(): Promise<string | undefined> {
    if (this.back !== undefined) {
      const line = this.back;
      this.back = undefined;
      return line;
    }
    while (this.position >= this.queue.length) {
      if (this.done) return undefined;
      await this.fill();
    }
    return this.queue[this.position++];
  }

  /** Puts one line back: the next `next()` returns it. */
  unshift(line: string): void {
    this.back = line;
  }

  private async fill(): Promise<void> {
    this.queue = [];
    this.position = 0;
    const { value, done } = await this.iterator.next();
    if (done) {
      this.done = true;
      const rest = this.carry + this.decoder.end();
      this.carry = '';
      if (rest !== '') {
        this.endedWithNewline = false;
        this.queue.push(rest);
      }
      return;
    }
    const chunk = typeof value === 'string' ? Buffer.from(value) : value;
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      await this.iterator.return?.();
      throw new ImportTooLargeError(this.maxBytes);
    }
    const lines = (this.carry + this.decoder.write(chunk)).split('\n');
    this.carry = lines.pop()!;
    this.queue = lines;
  }
}
