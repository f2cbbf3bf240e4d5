/** Undo/redo of the object being edited: snapshots of its prompts, mask and low-res logits. */
import type { DecodedMask, PromptBox, PromptPoint } from "../decoder/protocol";

export interface EditState {
  points: PromptPoint[];
  box: PromptBox | null;
  /** row-major H×W, or null when nothing is selected */
  mask: Uint8Array | null;
  /** 256×256 logits of the last decode, fed back as mask_input */
  lowRes: Float32Array | null;
  iou: number | null;
  /** the decoder's candidates for an ambiguous first click, best predicted IoU first; else null */
  candidates: DecodedMask[] | null;
  /** which candidate `mask`/`lowRes`/`iou` are */
  candidate: number;
}

export const emptyState = (): EditState => ({ points: [], box: null, mask: null, lowRes: null, iou: null, candidates: null, candidate: 0 });

/** `state` showing candidate `index` (wrapping around); the state itself when it has no candidates. */
export function withCandidate(state: EditState, index: number): EditState {
  const list = state.candidates;
  if (!list || !list.length) return state;
  const k = ((index % list.length) + list.length) % list.length;
  const c = list[k];
  return { ...state, candidate: k, mask: c.mask, lowRes: c.lowRes, iou: c.iou };
}

/** Undo steps kept: at most this many, fewer for large masks (see EditHistory), never fewer than the minimum. */
export const MAX_UNDO_STEPS = 100;
export const MIN_UNDO_STEPS = 10;
/** bytes of masks the undo history may hold (a 12-megapixel photo's masks are 12 MB each) */
export const UNDO_MASK_BYTES = 400 * 1024 * 1024;

export class EditHistory {
  private past: EditState[] = [];
  private future: EditState[] = [];
  state: EditState = emptyState();

  /** `maskBytes`: the budget for the masks the undo steps hold (a step holds its own mask array). */
  constructor(private readonly maskBytes = UNDO_MASK_BYTES) {}

  /** How many undo steps are kept for masks of `n` bytes each. */
  stepsFor(n: number): number {
    if (!n) return MAX_UNDO_STEPS;
    return Math.max(MIN_UNDO_STEPS, Math.min(MAX_UNDO_STEPS, Math.floor(this.maskBytes / n)));
  }

  /** Make `next` current, remembering the old state for undo. */
  push(next: EditState): void {
    this.past.push(this.state);
    const keep = this.stepsFor(next.mask?.length ?? this.state.mask?.length ?? 0);
    while (this.past.length > keep) this.past.shift();
    this.future = [];
    this.state = next;
  }

  undo(): boolean {
    const prev = this.past.pop();
    if (!prev) return false;
    this.future.push(this.state);
    this.state = prev;
    return true;
  }

  redo(): boolean {
    const next = this.future.pop();
    if (!next) return false;
    this.past.push(this.state);
    this.state = next;
    return true;
  }

  /** Change the current state in place (e.g. another candidate of the same click): not an undo step. */
  replace(next: EditState): void {
    this.state = next;
  }

  /** Start a fresh object (after accept or Esc); the cleared state is itself undoable. */
  reset(): void {
    this.push(emptyState());
  }

  clearAll(): void {
    this.past = [];
    this.future = [];
    this.state = emptyState();
  }
}

/** Paint a filled disk of radius r into a row-major mask (value 1 brush, 0 eraser). */
export function paintDisk(mask: Uint8Array, width: number, height: number, cx: number, cy: number, r: number, value: 0 | 1): void {
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(width - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(height - 1, Math.ceil(cy + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r2) mask[y * width + x] = value;
    }
  }
}

/**
 * Paint a stroke from (x0, y0) to (x1, y1): disks every half radius along the segment, so a fast
 * mouse move leaves no gaps between the positions the browser reported.
 */
export function paintStroke(mask: Uint8Array, width: number, height: number, x0: number, y0: number,
  x1: number, y1: number, r: number, value: 0 | 1): void {
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(0.5, r / 2)));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    paintDisk(mask, width, height, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, r, value);
  }
}
