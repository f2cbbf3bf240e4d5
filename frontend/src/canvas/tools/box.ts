/** The box tool: dragging draws a box prompt (image coordinates, clamped to the image). */
import type { PromptBox } from "../../decoder/protocol";

export class BoxDrag {
  private start: { x: number; y: number } | null = null;
  box: PromptBox | null = null;

  constructor(private width: number, private height: number) {}

  begin(p: { x: number; y: number }): void {
    this.start = this.clamp(p);
    this.box = null;
  }

  move(p: { x: number; y: number }): PromptBox | null {
    if (!this.start) return null;
    const q = this.clamp(p);
    this.box = { x0: this.start.x, y0: this.start.y, x1: q.x, y1: q.y };
    return this.box;
  }

  /** Finish; returns the normalised box, or null when it is too small to mean anything. */
  end(): PromptBox | null {
    const b = this.box;
    this.start = null;
    this.box = null;
    if (!b || Math.abs(b.x1 - b.x0) < 2 || Math.abs(b.y1 - b.y0) < 2) return null;
    return { x0: Math.min(b.x0, b.x1), y0: Math.min(b.y0, b.y1), x1: Math.max(b.x0, b.x1), y1: Math.max(b.y0, b.y1) };
  }

  private clamp(p: { x: number; y: number }): { x: number; y: number } {
    return { x: Math.min(this.width - 1, Math.max(0, p.x)), y: Math.min(this.height - 1, Math.max(0, p.y)) };
  }
}
