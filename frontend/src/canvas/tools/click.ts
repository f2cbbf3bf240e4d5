/** The click tool: a press-and-release without movement is a point prompt. */

/** Left click is positive; right click or Alt+click is negative. */
export function pointLabel(e: MouseEvent): 0 | 1 {
  return e.button === 2 || e.altKey ? 0 : 1;
}

/** A press and release closer than `slop` canvas pixels apart count as a click, not a drag. */
export function isClick(down: { clientX: number; clientY: number }, up: { clientX: number; clientY: number }, slop = 4): boolean {
  return Math.hypot(up.clientX - down.clientX, up.clientY - down.clientY) < slop;
}
