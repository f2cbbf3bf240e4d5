/**
 * The annotation canvas: draws the image, the accepted objects, the mask being edited, the
 * prompts, and the box being dragged, under the current zoom/pan. It knows nothing of the decoder.
 */
import { MaskLayer } from "./layers";
import { View } from "./view";
import type { PromptBox, PromptPoint } from "../decoder/protocol";

export interface DrawnObject { key: string; layer: MaskLayer; visible: boolean }

export class AnnotationCanvas {
  readonly view = new View();
  private ctx: CanvasRenderingContext2D;
  private image: CanvasImageSource | null = null;
  imageWidth = 0;
  imageHeight = 0;
  objects: DrawnObject[] = [];
  /** key of the object to emphasise (the proposal under review); drawn last, twice, with an outline box */
  highlight: string | null = null;
  /** every mask left out (the image alone, to check the masks against it); prompts are still drawn */
  masksHidden = false;
  /** how strongly masks cover the image: 1 as painted, lower lets more of the image through */
  maskOpacity = 1;
  /** key of the object whose row in the object list the pointer is over: emphasised instead of `highlight` */
  hovered: string | null = null;
  current: MaskLayer | null = null;
  currentVisible = false;
  points: PromptPoint[] = [];
  box: PromptBox | null = null;
  dragBox: PromptBox | null = null;
  brushCursor: { x: number; y: number; r: number } | null = null;
  /** the polygon being drawn (image coordinates) and the pointer, which the open side follows */
  polygon: { points: { x: number; y: number }[]; cursor: { x: number; y: number } | null } | null = null;
  private frame = 0;

  constructor(readonly el: HTMLCanvasElement) {
    const ctx = el.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("2D canvas is not available in this browser");
    this.ctx = ctx;
  }

  setImage(image: CanvasImageSource, width: number, height: number): void {
    this.image = image;
    this.imageWidth = width;
    this.imageHeight = height;
    this.current = new MaskLayer(width, height);
    this.currentVisible = false;
    this.objects = [];
    this.points = [];
    this.box = null;
    this.masksHidden = false; // a new image shows its masks, whatever H did on the last one
    this.view.fit(width, height, this.el.width, this.el.height);
    this.draw();
  }

  /**
   * Show no image while the next one loads: the last image must not stay on screen under a message
   * that another one could not be opened (its masks and prompts go with it; `setImage` shows the next).
   */
  clearImage(): void {
    this.image = null;
    this.objects = [];
    this.points = [];
    this.box = null;
    this.draw();
  }

  /**
   * Give the canvas a new size in pixels (the window changed). A view that showed the whole image
   * fits it again; a zoomed or panned one keeps the image point that was at the centre there.
   */
  resize(width: number, height: number): void {
    const oldW = this.el.width, oldH = this.el.height;
    if (width === oldW && height === oldH) return;
    const fitted = new View();
    fitted.fit(this.imageWidth, this.imageHeight, oldW, oldH);
    const wasFitted = Math.abs(fitted.scale - this.view.scale) < 1e-9 && Math.abs(fitted.offsetX - this.view.offsetX) < 1e-6
      && Math.abs(fitted.offsetY - this.view.offsetY) < 1e-6;
    this.el.width = width;
    this.el.height = height;
    if (!this.imageWidth || wasFitted) this.view.fit(this.imageWidth || 1, this.imageHeight || 1, width, height);
    else this.view.pan((width - oldW) / 2, (height - oldH) / 2);
    this.draw();
  }

  /** Zoom in (wheel up) or out by one wheel step about the pointer, and redraw. */
  wheelZoom(e: WheelEvent): void {
    const r = this.el.getBoundingClientRect();
    this.view.zoomAt(((e.clientX - r.left) * this.el.width) / r.width, ((e.clientY - r.top) * this.el.height) / r.height,
      e.deltaY < 0 ? 1.15 : 1 / 1.15);
    this.requestDraw();
  }

  /** Show `mask` as the object being edited (null hides it). Draws synchronously. */
  setCurrentMask(mask: Uint8Array | null, color: [number, number, number]): void {
    if (mask && this.current) {
      this.current.paint(mask, color, 150);
      this.currentVisible = true;
    } else {
      this.currentVisible = false;
    }
    this.draw();
  }

  /** Canvas-relative image coordinates of a mouse event. */
  eventToImage(e: MouseEvent): { x: number; y: number } {
    const r = this.el.getBoundingClientRect();
    const cx = ((e.clientX - r.left) * this.el.width) / r.width;
    const cy = ((e.clientY - r.top) * this.el.height) / r.height;
    return this.view.toImage(cx, cy);
  }

  inside(p: { x: number; y: number }): boolean {
    return p.x >= 0 && p.y >= 0 && p.x < this.imageWidth && p.y < this.imageHeight;
  }

  /** Redraw on the next animation frame (for pan/zoom/hover). */
  requestDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  draw(): void {
    const { ctx, view } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#1e1e1e";
    ctx.fillRect(0, 0, this.el.width, this.el.height);
    if (!this.image) return;
    ctx.setTransform(view.scale, 0, 0, view.scale, view.offsetX, view.offsetY);
    ctx.imageSmoothingEnabled = view.scale < 1;
    ctx.drawImage(this.image, 0, 0, this.imageWidth, this.imageHeight);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = this.maskOpacity;
    let emphasised: DrawnObject | null = null;
    for (const o of this.masksHidden ? [] : this.objects) {
      // the object whose row the pointer is on is shown (even if hidden) and emphasised; else the highlight
      if (o.key === this.hovered || (this.hovered === null && o.visible && o.key === this.highlight)) emphasised = o;
      else if (o.visible) o.layer.drawOn(ctx);
    }
    if (emphasised) {
      emphasised.layer.drawOn(ctx);
      emphasised.layer.drawOn(ctx);
      const b = emphasised.layer.bounds;
      if (b) {
        ctx.lineWidth = 2 / view.scale;
        ctx.setLineDash([6 / view.scale, 4 / view.scale]);
        ctx.strokeStyle = "#ffffff";
        ctx.strokeRect(b.x, b.y, b.w, b.h);
        ctx.setLineDash([]);
      }
    }
    if (this.currentVisible && this.current && !this.masksHidden) this.current.drawOn(ctx);
    ctx.globalAlpha = 1;
    const px = 1 / view.scale;
    for (const p of this.points) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, 5 * px, 0, Math.PI * 2);
      ctx.fillStyle = p.label === 1 ? "#2ecc71" : "#e74c3c";
      ctx.fill();
      ctx.lineWidth = 1.5 * px;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
    for (const b of [this.box, this.dragBox]) {
      if (!b) continue;
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = "#f1c40f";
      ctx.strokeRect(Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), Math.abs(b.x1 - b.x0), Math.abs(b.y1 - b.y0));
    }
    if (this.polygon && this.polygon.points.length) {
      const pts = this.polygon.points, c = this.polygon.cursor;
      ctx.beginPath();
      ctx.moveTo(pts[0].x, pts[0].y);
      for (const q of pts.slice(1)) ctx.lineTo(q.x, q.y);
      if (c) ctx.lineTo(c.x, c.y);
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = "#00e5ff";
      ctx.stroke();
      pts.forEach((q, i) => {
        ctx.beginPath();
        // the first vertex is drawn larger: a click on it closes the polygon
        ctx.arc(q.x, q.y, (i === 0 && pts.length >= 3 ? 6 : 3.5) * px, 0, Math.PI * 2);
        ctx.fillStyle = i === 0 ? "#ffffff" : "#00e5ff";
        ctx.fill();
      });
    }
    if (this.brushCursor) {
      ctx.beginPath();
      ctx.arc(this.brushCursor.x, this.brushCursor.y, this.brushCursor.r, 0, Math.PI * 2);
      ctx.lineWidth = px;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  }
}
