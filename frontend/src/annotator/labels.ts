/**
 * Keyboard choice of labels: digits 1–9 pick the first nine labels and 0 the tenth; a project with
 * more labels uses the filter (L), where typing narrows the list by name and Enter takes the first match.
 */
import type { Label } from "../api/types";

/** The key that picks the label at `index` (0-based), or null past the tenth. */
export function labelKey(index: number): string | null {
  if (index < 0 || index > 9) return null;
  return index === 9 ? "0" : String(index + 1);
}

/** The label a digit key picks, or null when the key is not a digit or no label has that key. */
export function labelForKey(key: string, labels: readonly Label[]): Label | null {
  if (!/^[0-9]$/.test(key)) return null;
  const index = key === "0" ? 9 : Number(key) - 1;
  return labels[index] ?? null;
}

/**
 * The labels whose name matches `query` (case-insensitive), names that start with it before names
 * that only contain it, each group in project order. An empty query matches every label.
 */
export function filterLabels(query: string, labels: readonly Label[]): Label[] {
  const q = query.trim().toLowerCase();
  if (!q) return [...labels];
  const starts = labels.filter((l) => l.name.toLowerCase().startsWith(q));
  const contains = labels.filter((l) => !l.name.toLowerCase().startsWith(q) && l.name.toLowerCase().includes(q));
  return [...starts, ...contains];
}
