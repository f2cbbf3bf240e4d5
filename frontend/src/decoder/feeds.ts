/**
 * The decoder's input arrays, built exactly as the official SAM web demo builds them:
 * prompt coordinates scaled into the resized (longest side 1024) frame, box corners as labels 2/3,
 * a padding point (0,0) with label −1 when there is no box, `mask_input` zeros and
 * `has_mask_input` 0 on the first click, else the previous low-res logits, and `orig_im_size` (H, W).
 */
import type { Prompt } from "./protocol";

export interface DecoderFeeds {
  point_coords: { data: Float32Array; dims: [1, number, 2] };
  point_labels: { data: Float32Array; dims: [1, number] };
  mask_input: { data: Float32Array; dims: [1, 1, 256, 256] };
  has_mask_input: { data: Float32Array; dims: [1] };
  orig_im_size: { data: Float32Array; dims: [2] };
}

export const LOW_RES = 256;

export function buildFeeds(
  prompt: Prompt,
  origSize: [number, number],
  inputSize: [number, number],
  maskInput: Float32Array | null,
): DecoderFeeds {
  const [origH, origW] = origSize;
  const sx = inputSize[1] / origW;
  const sy = inputSize[0] / origH;
  const n = prompt.points.length + (prompt.box ? 2 : 1);
  if (n === 1 && !prompt.box) throw new Error("a decoder prompt needs at least one point or a box");
  const coords = new Float32Array(n * 2);
  const labels = new Float32Array(n);
  let i = 0;
  for (const p of prompt.points) {
    coords[2 * i] = p.x * sx;
    coords[2 * i + 1] = p.y * sy;
    labels[i] = p.label;
    i++;
  }
  if (prompt.box) {
    const b = prompt.box;
    coords.set([Math.min(b.x0, b.x1) * sx, Math.min(b.y0, b.y1) * sy, Math.max(b.x0, b.x1) * sx, Math.max(b.y0, b.y1) * sy], 2 * i);
    labels[i] = 2;
    labels[i + 1] = 3;
  } else {
    coords[2 * i] = 0;
    coords[2 * i + 1] = 0;
    labels[i] = -1;
  }
  if (maskInput && maskInput.length !== LOW_RES * LOW_RES) {
    throw new Error(`mask_input must have ${LOW_RES * LOW_RES} values, got ${maskInput.length}`);
  }
  return {
    point_coords: { data: coords, dims: [1, n, 2] },
    point_labels: { data: labels, dims: [1, n] },
    mask_input: { data: maskInput ? maskInput : new Float32Array(LOW_RES * LOW_RES), dims: [1, 1, 256, 256] },
    has_mask_input: { data: new Float32Array([maskInput ? 1 : 0]), dims: [1] },
    orig_im_size: { data: new Float32Array([origH, origW]), dims: [2] },
  };
}
