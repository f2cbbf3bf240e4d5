/** Zoom and pan: the transform between image pixels and canvas pixels. */

export class View {
  scale = 1;
  offsetX = 0;
  offsetY = 0;

  /** Fit an image of w×h into a canvas of cw×ch, centred. */
  fit(w: number, h: number, cw: number, ch: number): void {
    this.scale = Math.min(cw / w, ch / h);
    this.offsetX = (cw - w * this.scale) / 2;
    this.offsetY = (ch - h * this.scale) / 2;
  }

  /** Canvas pixel → image pixel. */
  toImage(cx: number, cy: number): { x: number; y: number } {
    return { x: (cx - this.offsetX) / this.scale, y: (cy - this.offsetY) / this.scale };
  }

  /** Zoom by `factor` keeping canvas point (cx, cy) fixed. */
  zoomAt(cx: number, cy: number, factor: number): void {
    const next = Math.min(64, Math.max(0.05, this.scale * factor));
    const f = next / this.scale;
    this.offsetX = cx - (cx - this.offsetX) * f;
    this.offsetY = cy - (cy - this.offsetY) * f;
    this.scale = next;
  }

  pan(dx: number, dy: number): void {
    this.offsetX += dx;
    this.offsetY += dy;
  }
}
