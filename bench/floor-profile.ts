/** Filled in after profiling (see below). */
export const FLOOR_PROFILE_NOTES: readonly string[] = [];
