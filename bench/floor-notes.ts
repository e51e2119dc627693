/** What bench/floor-profile.ts found, rendered under the peers tables (hand-written: update with it). */
export const FLOOR_PROFILE_NOTES: readonly string[] = ['(to be written after profiling)'];
