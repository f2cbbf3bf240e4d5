/** The brush tool: paints a disc of radius r along the stroke into a row-major H×W mask. */

/** Set pixels within `r` of (cx, cy) to `value`. */
export function paintDisc(mask: Uint8Array, width: number, height: number, cx: number, cy: number, r: number, value: 0 | 1): void {
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(width - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(height - 1, Math.ceil(cy + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      if (dx * dx + dy * dy <= r2) mask[y * width + x] = value;
    }
  }
}

/** Paint discs every r/2 pixels along the segment from `a` to `b`. */
export function paintStroke(
  mask: Uint8Array, width: number, height: number,
  a: { x: number; y: number }, b: { x: number; y: number }, r: number, value: 0 | 1,
): void {
  const steps = Math.max(1, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / Math.max(0.5, r / 2)));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    paintDisc(mask, width, height, a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, r, value);
  }
}

export const BRUSH_VALUE = 1 as const;
