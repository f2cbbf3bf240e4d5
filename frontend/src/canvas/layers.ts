/** A binary mask turned into a drawable bitmap (one canvas per mask, re-painted only on change). */
import { fillMaskPixels } from "../decoder/masks";

type Canvas2D = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;
type Box = { x: number; y: number; w: number; h: number };

function newCanvas(width: number, height: number): HTMLCanvasElement | OffscreenCanvas {
  return typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height) : Object.assign(document.createElement("canvas"), { width, height });
}

function context(canvas: HTMLCanvasElement | OffscreenCanvas): Canvas2D {
  const ctx = canvas.getContext("2d") as Canvas2D | null;
  if (!ctx) throw new Error("2D canvas is not available in this browser");
  return ctx;
}

/**
 * The editor's mask (`cropped` false): a canvas the size of the image, with its pixel buffer kept for
 * the next paint (it is repainted on every click and brush move). A listed object's mask (`cropped`
 * true): a canvas only as large as the mask's bounding box, drawn at its place, and no pixel buffer
 * kept, so a hundred proposals on a 12-megapixel photo hold their boxes, not a hundred full images
 * (each full-size layer held ~96 MB there: the canvas and its RGBA buffer).
 */
export class MaskLayer {
  canvas: HTMLCanvasElement | OffscreenCanvas;
  private ctx: Canvas2D;
  private pixels: ImageData | null = null;
  /** bounding box of the painted pixels (image coordinates), null when empty */
  bounds: Box | null = null;

  constructor(public readonly width: number, public readonly height: number, readonly cropped = false) {
    this.canvas = cropped ? newCanvas(1, 1) : newCanvas(width, height);
    this.ctx = context(this.canvas);
  }

  /** Paint `mask` (row-major H×W) in `color`. */
  paint(mask: Uint8Array, color: [number, number, number], alpha = 140): void {
    if (mask.length !== this.width * this.height) {
      throw new Error(`mask has ${mask.length} pixels, layer is ${this.width}×${this.height}`);
    }
    if (!this.cropped) {
      this.paintInPlace(mask, color, alpha);
      return;
    }
    this.bounds = maskBounds(mask, this.width, this.height);
    const b = this.bounds ?? { x: 0, y: 0, w: 1, h: 1 };
    if (this.canvas.width !== b.w || this.canvas.height !== b.h) {
      this.canvas = newCanvas(b.w, b.h);
      this.ctx = context(this.canvas);
    }
    const box = new ImageData(b.w, b.h);
    if (this.bounds) fillMaskPixels(mask, this.width, b, new Uint32Array(box.data.buffer), b.w, b.x, b.y, color, alpha);
    this.ctx.putImageData(box, 0, 0);
  }

  /**
   * The full-size layer repainted: only the pixels in the old mask's box and the new one's are
   * rewritten and sent to the canvas (`putImageData`'s dirty rectangle), so a click or a brush move on a
   * 12-megapixel photo does not rewrite 48 MB of pixels each time.
   */
  private paintInPlace(mask: Uint8Array, color: [number, number, number], alpha: number): void {
    const first = this.pixels === null;
    this.pixels ??= new ImageData(this.width, this.height);
    const packed = new Uint32Array(this.pixels.data.buffer);
    const old = this.bounds;
    const next = maskBounds(mask, this.width, this.height);
    if (old) for (let y = old.y; y < old.y + old.h; y++) packed.fill(0, y * this.width + old.x, y * this.width + old.x + old.w);
    if (next) fillMaskPixels(mask, this.width, next, packed, this.width, 0, 0, color, alpha);
    this.bounds = next;
    if (first) { this.ctx.putImageData(this.pixels, 0, 0); return; }
    const dirty = union(old, next);
    if (dirty) this.ctx.putImageData(this.pixels, 0, 0, dirty.x, dirty.y, dirty.w, dirty.h);
  }

  /** Draw the layer in image coordinates (the context's transform maps the image). */
  drawOn(ctx: Canvas2D): void {
    if (!this.cropped) ctx.drawImage(this.canvas, 0, 0);
    else if (this.bounds) ctx.drawImage(this.canvas, this.bounds.x, this.bounds.y);
  }
}

function union(a: Box | null, b: Box | null): Box | null {
  if (!a) return b;
  if (!b) return a;
  const x = Math.min(a.x, b.x), y = Math.min(a.y, b.y);
  return { x, y, w: Math.max(a.x + a.w, b.x + b.w) - x, h: Math.max(a.y + a.h, b.y + b.h) - y };
}

/** Bounding box of the set pixels of a row-major H×W mask, or null when none is set. */
export function maskBounds(mask: Uint8Array, width: number, height: number): Box | null {
  let y0 = -1, y1 = -1, x0 = width, x1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let first = -1, last = -1;
    for (let x = 0; x < width; x++) if (mask[row + x]) { if (first < 0) first = x; last = x; }
    if (first < 0) continue;
    if (y0 < 0) y0 = y;
    y1 = y;
    if (first < x0) x0 = first;
    if (last > x1) x1 = last;
  }
  return y0 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}
