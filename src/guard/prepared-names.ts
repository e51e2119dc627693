import QuickLRU from 'quick-lru';

/**
 * The texts named statements were sent with through one `guard.wrap(pool)`. node-postgres sends a
 * named statement's text only the first time on a connection and afterwards runs what that
 * connection prepared under the name, whatever `text` says now (it only checks a non-empty text
 * against the prepared one). So the guard must judge the text the name was prepared with:
 * a named statement must always come with its text, and a name keeps the text it was first seen
 * with. The guard then checks that text with this execution's values.
 */
export class PreparedNames {
  // Names are constants of the application; the bound only keeps a runaway caller from growing
  // it. A forgotten name is harmless: an empty text is refused anyway, and pg itself refuses a
  // different text for a name its connection prepared.
  private readonly texts = new QuickLRU<string, string>({ maxSize: 10_000 });

  /** Why this named execution is refused, or undefined (also for unnamed statements). */
  refusal(name: unknown, text: string): string | undefined {
    if (name === undefined || name === null || name === '') return undefined;
    if (typeof name !== 'string') return 'a statement name must be a string';
    if (text.trim().length === 0) {
      return 'a named statement sent without its text would run whatever the connection prepared under that name, unchecked: send the text with every execution';
    }
    const seen = this.texts.get(name);
    if (seen === undefined) {
      this.texts.set(name, text);
      return undefined;
    }
    return seen === text ? undefined : 'this statement name was used before with another text; the connection may run the other one: one name, one text';
  }
}
