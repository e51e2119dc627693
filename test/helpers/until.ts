/** Waits until `check` returns a value other than undefined/false, polling, or throws after `withinMs`. */
export async function until<T>(check: () => Promise<T | undefined | false> | T | undefined | false, withinMs: number, what = 'the condition'): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
