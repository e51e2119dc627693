import test from 'ava';
import { formatBytes, Progress } from '../src/progress.js';

test('on a terminal the progress line is redrawn in place; elsewhere plain lines, throttled, and the last', (t) => {
  const tty: string[] = [];
  const bar = new Progress((s) => tty.push(s), true);
  bar.update('export: 1 kB');
  bar.update('export: 2 kB');
  bar.line('step');
  bar.update('export: 3 kB', true);
  t.deepEqual(tty, ['\r\x1b[2Kexport: 1 kB', '\r\x1b[2Kexport: 2 kB', '\n', 'step\n', '\r\x1b[2Kexport: 3 kB\n']);

  const plain: string[] = [];
  const log = new Progress((s) => plain.push(s), false, 60_000);
  log.update('export: 1 kB');
  log.update('export: 2 kB'); // within the interval: not written
  log.update('export: 3 kB', true);
  t.deepEqual(plain, ['export: 1 kB\n', 'export: 3 kB\n']);
  t.false(plain.join('').includes('\r'));
  t.is(formatBytes(999), '999 B');
  t.is(formatBytes(1_234_567), '1.2 MB');
});
