/** Decoder outputs to binary masks and to coloured overlay pixels. */

/** Threshold logits (> 0 is inside) of mask `index` in a 1×C×H×W output into a row-major H×W mask. */
export function logitsToMask(logits: Float32Array, height: number, width: number, index = 0): Uint8Array {
  const n = height * width;
  const out = new Uint8Array(n);
  const base = index * n;
  for (let i = 0; i < n; i++) out[i] = logits[base + i] > 0 ? 1 : 0;
  return out;
}

/** "#rrggbb" → [r, g, b]. */
export function parseColor(color: string): [number, number, number] {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color.trim());
  if (!m) return [30, 144, 255];
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/** Paint a mask into RGBA pixels (same H×W), alpha 0..255 where inside. */
export function maskToRgba(mask: Uint8Array, rgba: Uint8ClampedArray, color: [number, number, number], alpha = 140): void {
  const packed = new Uint32Array(rgba.buffer, rgba.byteOffset, mask.length);
  // little-endian ABGR
  const on = ((alpha << 24) | (color[2] << 16) | (color[1] << 8) | color[0]) >>> 0;
  for (let i = 0; i < mask.length; i++) packed[i] = mask[i] ? on : 0;
}
