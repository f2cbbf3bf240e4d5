/**
 * The images an annotator opened in a project, in the order first opened, kept in this browser so
 * that P goes back to the previous one (to correct it) across reloads. Going back does not reorder
 * the list: P again goes further back, and the queue (N) appends the images it hands out.
 */

/** how many image ids are kept per user and project */
export const VISITED_KEPT = 200;

export function visitedKey(userId: number, projectId: number): string {
  return `maskloop.visited.${userId}.${projectId}`;
}

/** `list` with `imageId` appended when it is not in it yet (the oldest dropped beyond `VISITED_KEPT`). */
export function withVisit(list: readonly number[], imageId: number): number[] {
  if (list.includes(imageId)) return [...list];
  return [...list, imageId].slice(-VISITED_KEPT);
}

/** The image opened before `current` (the newest one when `current` is not in the list, or null); null when none. */
export function previousOf(list: readonly number[], current: number | null): number | null {
  const at = current === null ? -1 : list.indexOf(current);
  if (at === -1) return list.length ? list[list.length - 1] : null;
  return at > 0 ? list[at - 1] : null;
}

export function readVisited(storage: Storage, key: string): number[] {
  try {
    const v: unknown = JSON.parse(storage.getItem(key) ?? "[]");
    return Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : [];
  } catch {
    return [];
  }
}

/** Forget `imageId` (it was deleted, or can no longer be opened). */
export function withoutImage(list: readonly number[], imageId: number): number[] {
  return list.filter((x) => x !== imageId);
}
