/**
 * The polygon tool's geometry: a closed polygon (image coordinates, in pixels) filled into a row-major
 * H×W mask. A pixel belongs to the polygon when its centre does (even-odd rule), so a polygon through
 * pixel corners covers exactly the pixels inside it and two polygons sharing an edge do not overlap.
 */

export interface Vertex { x: number; y: number }

/**
 * Set to `value` (1 adds, 0 removes) the pixels of `mask` whose centres lie inside the polygon
 * `points` (three or more vertices; it is closed from the last vertex back to the first).
 * Returns how many pixels it set.
 */
export function fillPolygon(mask: Uint8Array, width: number, height: number, points: Vertex[], value: 0 | 1): number {
  if (points.length < 3) return 0;
  let top = Infinity, bottom = -Infinity;
  for (const p of points) { top = Math.min(top, p.y); bottom = Math.max(bottom, p.y); }
  const y0 = Math.max(0, Math.ceil(top - 0.5)), y1 = Math.min(height - 1, Math.floor(bottom - 0.5));
  const xs: number[] = [];
  let count = 0;
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5;
    xs.length = 0;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const a = points[j], b = points[i];
      // half-open in y, so a vertex on the scan line is counted once
      if ((a.y <= cy) !== (b.y <= cy)) xs.push(a.x + ((cy - a.y) * (b.x - a.x)) / (b.y - a.y));
    }
    xs.sort((p, q) => p - q);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // pixels whose centre x + 0.5 lies in [xs[k], xs[k+1])
      const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(width - 1, Math.ceil(xs[k + 1] - 0.5) - 1);
      for (let x = from; x <= to; x++) mask[y * width + x] = value;
      count += Math.max(0, to - from + 1);
    }
  }
  return count;
}

/** Whether `p` is within `tolerance` (image pixels) of the polygon's first vertex: a click there closes it. */
export function closesPolygon(points: Vertex[], p: Vertex, tolerance: number): boolean {
  return points.length >= 3 && Math.hypot(p.x - points[0].x, p.y - points[0].y) <= tolerance;
}
