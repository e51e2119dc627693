/**
 * Waiting in tests: for a condition, with a deadline, never for a fixed time. A slow machine makes
 * the wait longer, not the test red; a condition that never holds fails with `message`.
 */
export interface WaitOptions {
  /** Give up after this long. Default 10_000: generous, since only a broken condition reaches it. */
  timeoutMs?: number;
  /** Says what was awaited, in the error thrown at the deadline. */
  message: string;
  /** Pause between checks. Default 10. */
  intervalMs?: number;
}

/**
 * Resolves with the first truthy value of `condition` (sync or async); rejects at the deadline with
 * `message` and the last error `condition` threw, if any.
 *
 * @example
 * await waitFor(async () => (await status()) === 403, { message: 'the suspension reached the other instance' });
 */
export async function waitFor<T>(condition: () => T | Promise<T>, options: WaitOptions): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() >= deadline) {
      throw new Error(`waitFor: not within ${timeoutMs} ms: ${options.message}`, lastError === undefined ? undefined : { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
