/** Decoder outputs to binary masks and to coloured overlay pixels. */

/** Threshold logits (> 0 is inside) of mask `index` in a 1×C×H×W output into a row-major H×W mask. */
export function logitsToMask(logits: Float32Array, height: number, width: number, index = 0): Uint8Array {
  const n = height * width;
  const out = new Uint8Array(n);
  const base = index * n;
  for (let i = 0; i < n; i++) out[i] = logits[base + i] > 0 ? 1 : 0;
  return out;
}

/**
 * Longest side, in pixels, at which the page decodes and refines masks: the decoder's own frame (its
 * logits are 256² for a 1024² input, so a larger mask holds no more of the model's detail). The
 * decoder's cost grows with the size it upsamples its masks to (a 4000×3000 photo took ~1 s per
 * click at full size, ~0.1 s at 1024×768), so larger images are decoded and refined at this size and
 * their masks scaled up to the image (`upsampleMask`).
 */
export const MAX_MASK_SIDE = 1024;

/** [height, width] at which masks of an H×W image are decoded and refined (the image's own size up to MAX_MASK_SIDE). */
export function maskWorkSize(height: number, width: number): [number, number] {
  const long = Math.max(height, width);
  if (long <= MAX_MASK_SIDE) return [height, width];
  const s = MAX_MASK_SIDE / long;
  return [Math.max(1, Math.round(height * s)), Math.max(1, Math.round(width * s))];
}

/**
 * A row-major sh×sw mask scaled to dh×dw by nearest neighbour: each output pixel takes the source pixel
 * under its centre. The work goes with the mask's area, not the output's: each run of set source
 * pixels becomes one `fill` of its output span, and the output rows that map to the same source row
 * copy the first one's set span (a 12-megapixel output is mostly left as allocated, zero).
 */
export function upsampleMask(src: Uint8Array, sh: number, sw: number, dh: number, dw: number): Uint8Array {
  if (sh === dh && sw === dw) return src;
  const out = new Uint8Array(dh * dw);
  // source column x covers output columns [start[x], start[x + 1]) (empty when no centre falls on it)
  const start = new Int32Array(sw + 1);
  let s = 0;
  for (let x = 0; x < dw; x++) {
    const sx = Math.min(sw - 1, Math.floor(((x + 0.5) * sw) / dw));
    while (s <= sx) start[s++] = x;
  }
  while (s <= sw) start[s++] = dw;
  let prev = -1, lo = 0, hi = 0;
  for (let y = 0; y < dh; y++) {
    const sy = Math.min(sh - 1, Math.floor(((y + 0.5) * sh) / dh));
    const row = y * dw;
    if (sy === prev) {
      if (hi > lo) out.copyWithin(row + lo, row - dw + lo, row - dw + hi);
      continue;
    }
    prev = sy;
    lo = dw; hi = 0;
    const srow = sy * sw;
    for (let x = 0; x < sw; x++) {
      if (!src[srow + x]) continue;
      let e = x + 1;
      while (e < sw && src[srow + e]) e++;
      const a = start[x], b = start[e];
      if (b > a) {
        out.fill(1, row + a, row + b);
        if (a < lo) lo = a;
        hi = b;
      }
      x = e;
    }
  }
  return out;
}

/** "#rrggbb" → [r, g, b]. */
export function parseColor(color: string): [number, number, number] {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color.trim());
  if (!m) return [30, 144, 255];
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/**
 * Write `color` at `alpha` into the RGBA pixels `out` (packed, little-endian: one Uint32 per pixel, a
 * buffer `outWidth` wide whose top-left is the mask's pixel (outX, outY)) for every set pixel of the
 * row-major mask (`width` wide) inside `box`; other pixels are left as they are.
 */
export function fillMaskPixels(mask: Uint8Array, width: number, box: { x: number; y: number; w: number; h: number },
  out: Uint32Array, outWidth: number, outX: number, outY: number, color: [number, number, number], alpha: number): void {
  const on = ((alpha << 24) | (color[2] << 16) | (color[1] << 8) | color[0]) >>> 0;
  for (let y = box.y; y < box.y + box.h; y++) {
    const src = y * width, dst = (y - outY) * outWidth - outX;
    for (let x = box.x; x < box.x + box.w; x++) if (mask[src + x]) out[dst + x] = on;
  }
}
