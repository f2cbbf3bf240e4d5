/** A binary mask turned into a drawable bitmap (one canvas per mask, re-painted only on change). */
import { maskToRgba } from "../decoder/masks";

export class MaskLayer {
  readonly canvas: HTMLCanvasElement | OffscreenCanvas;
  private ctx: CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;
  private pixels: ImageData;
  /** bounding box of the painted pixels (image coordinates), null when empty */
  bounds: { x: number; y: number; w: number; h: number } | null = null;

  constructor(public readonly width: number, public readonly height: number) {
    this.canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height) : Object.assign(document.createElement("canvas"), { width, height });
    const ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D | null;
    if (!ctx) throw new Error("2D canvas is not available in this browser");
    this.ctx = ctx;
    this.pixels = new ImageData(width, height);
  }

  /** Paint `mask` (row-major H×W) in `color`. */
  paint(mask: Uint8Array, color: [number, number, number], alpha = 140): void {
    if (mask.length !== this.width * this.height) {
      throw new Error(`mask has ${mask.length} pixels, layer is ${this.width}×${this.height}`);
    }
    this.bounds = maskToRgba(mask, this.pixels.data, color, alpha, this.width);
    this.ctx.putImageData(this.pixels, 0, 0);
  }
}
