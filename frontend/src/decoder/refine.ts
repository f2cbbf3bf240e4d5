/**
 * Edge-aware refinement of decoded masks: the guided filter with the image as guide, the same
 * arithmetic as `backend/services/mask_refine.py` (which the evaluation and the simulated annotators
 * run), in float64. The image-only statistics are computed once per image (`GuidedRefiner`); a
 * decode then costs box filters on a working grid of at most `work_size` cells on the long side and
 * one bilinear pass at full resolution. Before the filter, a colour term (two colour histograms of
 * the image, inside and outside the decoder's mask) moves each grid cell's logit towards the side
 * its colour belongs to. After the filter, an optional GrabCut pass (`grabcut.ts`) seeded by the
 * refined mask and the clicks, whose labels are taken back to full resolution.
 */

import type { GrabCutPass } from "./grabcut";
import { logitsToMask } from "./masks";
import type { PromptPoint } from "./protocol";

/** How far from one half a grid cell's bound must stay to decide its pixels without arithmetic. */
const SURE_MARGIN = 1e-3;

export interface RefineParams {
  method: "guided" | "none";
  work_size: number;
  radius: number;
  eps: number;
  /** weight of the colour term (0 or absent: off), bins per RGB channel, bound on the log-ratio */
  colour?: number;
  colour_bins?: number;
  colour_clip?: number;
  /** long side of the GrabCut pass in pixels (0 or absent: off), its iterations, the clicks' disc radius */
  grabcut?: number;
  grabcut_iters?: number;
  grabcut_disc?: number;
  /** the pass's window: 0 or absent = the whole image, c > 0 = the mask's box widened by c × its long side */
  grabcut_crop?: number;
  /**
   * which candidate of a first click is shown first: "head" (or absent) = the decoder's predicted IoU,
   * only that one refined; "refined" = every candidate refined and ranked by `refinedIou`
   */
  select?: "refined" | "head";
  /** the refined-candidate rule's weights: intercept, agreement, ln raw area, ln refined area, decoder IoU */
  select_weights?: number[];
}

/**
 * Predicted IoU of the refined mask `refined` of candidate `index` of the decoder's logits (1×K×H×W,
 * raw mask: logit > 0) whose decoder-predicted IoU is `decoderIou`: `weights[0] + weights[1]·agreement
 * + weights[2]·ln(raw area + 1e-4) + weights[3]·ln(refined area + 1e-4) + weights[4]·decoderIou`,
 * clipped to [0, 1] (agreement: IoU of the raw and the refined mask; areas: fractions of the image).
 * The rule of `refined_iou` in `backend/services/mask_refine.py`, fitted there.
 */
export function refinedIou(logits: Float32Array, index: number, refined: Uint8Array, decoderIou: number,
  weights: readonly number[]): number {
  const n = refined.length;
  const base = index * n;
  let raw = 0, ref = 0, both = 0;
  for (let i = 0; i < n; i++) {
    const a = logits[base + i] > 0;
    if (a) raw++;
    if (refined[i]) { ref++; if (a) both++; }
  }
  const union = raw + ref - both;
  const agree = union === 0 ? 1 : both / union;
  const v = weights[0] + weights[1] * agree + weights[2] * Math.log(raw / n + 1e-4) + weights[3] * Math.log(ref / n + 1e-4)
    + weights[4] * decoderIou;
  return Math.min(Math.max(v, 0), 1);
}

/**
 * The RGBA pixels of an image drawn at `width`×`height` (the guide the worker refines masks with: the
 * image's own size, or the mask work size of a large photo, scaled down smoothly).
 */
export function imagePixels(source: CanvasImageSource, width: number, height: number): Uint8ClampedArray {
  const c = new OffscreenCanvas(width, height);
  const ctx = c.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw new Error("no 2D canvas context to read the image's pixels");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

/** Mean over the (2r+1)² window of each cell of an h×w grid (window clipped to the grid). */
export function boxMean(x: Float64Array, h: number, w: number, r: number): Float64Array {
  // down the columns with a running window sum per column, then along the rows the same way
  const tmp = new Float64Array(x.length);
  const acc = new Float64Array(w);
  for (let y = 0; y < Math.min(r, h); y++) for (let j = 0, o = y * w; j < w; j++) acc[j] += x[o + j];
  for (let y = 0; y < h; y++) {
    const add = y + r, drop = y - r - 1;
    if (add < h) for (let j = 0, o = add * w; j < w; j++) acc[j] += x[o + j];
    if (drop >= 0) for (let j = 0, o = drop * w; j < w; j++) acc[j] -= x[o + j];
    const inv = 1 / (Math.min(y + r + 1, h) - Math.max(y - r, 0));
    for (let j = 0, o = y * w; j < w; j++) tmp[o + j] = acc[j] * inv;
  }
  const out = new Float64Array(x.length);
  for (let y = 0; y < h; y++) {
    const o = y * w;
    let sum = 0;
    for (let i = 0; i < Math.min(r, w); i++) sum += tmp[o + i];
    for (let i = 0; i < w; i++) {
      if (i + r < w) sum += tmp[o + i + r];
      if (i - r - 1 >= 0) sum -= tmp[o + i - r - 1];
      out[o + i] = sum / (Math.min(i + r + 1, w) - Math.max(i - r, 0));
    }
  }
  return out;
}

/** Bilinear taps from grid cells to full pixels: pixel i sits at grid coordinate (i + 0.5)/s − 0.5, clamped. */
function taps(nFull: number, nGrid: number, s: number): { lo: Int32Array; hi: Int32Array; wt: Float64Array } {
  const lo = new Int32Array(nFull), hi = new Int32Array(nFull), wt = new Float64Array(nFull);
  for (let i = 0; i < nFull; i++) {
    const pos = Math.min(Math.max((i + 0.5) / s - 0.5, 0), nGrid - 1);
    const l = Math.floor(pos);
    lo[i] = l;
    hi[i] = Math.min(l + 1, nGrid - 1);
    wt[i] = pos - l;
  }
  return { lo, hi, wt };
}

export class GuidedRefiner {
  readonly width: number;
  readonly height: number;
  readonly scale: number;
  readonly gw: number;
  readonly gh: number;
  private readonly r: number;
  /** full-resolution colours in [0, 1], RGB interleaved (float32: the last pass is memory-bound) */
  private readonly image: Float32Array;
  /** block-mean colours on the grid and their window means, one plane per channel */
  private readonly guide: Float64Array[];
  private readonly meanI: Float64Array[];
  /** inverse of (window covariance + eps·I), 9 per cell, row-major */
  private readonly invCov: Float64Array;
  /** grid cell of each full-resolution column and row */
  private readonly cellX: Int32Array;
  private readonly cellY: Int32Array;
  /** how many full pixels each grid cell averages */
  private readonly counts: Float64Array;
  private readonly rows: ReturnType<typeof taps>;
  private readonly cols: ReturnType<typeof taps>;
  /** runs of columns with the same two grid columns: (first x, end x, lower cell, upper cell) each */
  private readonly colRuns: Int32Array;
  /** the colour term's weight, bins per channel, clip, and each grid cell's histogram bin (or null: off) */
  private readonly colour: number;
  private readonly colourBins: number;
  private readonly colourClip: number;
  private readonly cellBin: Int32Array | null;
  /** the GrabCut pass (null: off) */
  private readonly gc: GrabCutPass | null;
  /** the refined-candidate rule's weights (`refinedIou`), or null: candidates ranked by the decoder's IoU */
  readonly selectWeights: readonly number[] | null;

  /**
   * `rgba`: the image's pixels (RGBA, row-major, `width`×`height`, e.g. from `getImageData`);
   * `gc`: the GrabCut pass on the same image when `params.grabcut` asks for it.
   */
  constructor(rgba: Uint8ClampedArray | Uint8Array, width: number, height: number, params: RefineParams,
    gc: GrabCutPass | null = null) {
    if (params.method !== "guided") throw new Error("GuidedRefiner needs method 'guided'");
    if (rgba.length !== width * height * 4) throw new Error(`the guide has ${rgba.length} bytes, not ${width}×${height}×4`);
    this.width = width;
    this.height = height;
    this.r = params.radius;
    const s = (this.scale = Math.max(1, Math.ceil(Math.max(width, height) / params.work_size)));
    const gw = (this.gw = Math.ceil(width / s));
    const gh = (this.gh = Math.ceil(height / s));
    this.cellX = Int32Array.from({ length: width }, (_, x) => Math.floor(x / s));
    this.cellY = Int32Array.from({ length: height }, (_, y) => Math.floor(y / s));
    const n = width * height, m = gw * gh, r = this.r;
    this.image = new Float32Array(n * 3);
    for (let i = 0; i < n * 3; i++) this.image[i] = rgba[(i / 3 | 0) * 4 + (i % 3)] / 255;
    this.counts = new Float64Array(m);
    for (let gy = 0; gy < gh; gy++) {
      const rowsIn = Math.min((gy + 1) * s, height) - gy * s;
      for (let gx = 0; gx < gw; gx++) this.counts[gy * gw + gx] = rowsIn * (Math.min((gx + 1) * s, width) - gx * s);
    }
    this.guide = [0, 1, 2].map((c) => this.blockMean(this.image, 3, c));
    this.colour = params.colour ?? 0;
    this.colourBins = params.colour_bins ?? 16;
    this.colourClip = params.colour_clip ?? 3;
    this.cellBin = this.colour > 0 ? this.binCells(rgba) : null;
    this.meanI = this.guide.map((g) => boxMean(g, gh, gw, r));
    const pairs: [number, number][] = [[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]];
    const cov = pairs.map(([a, b]) => {
      const prod = new Float64Array(m);
      for (let i = 0; i < m; i++) prod[i] = this.guide[a][i] * this.guide[b][i];
      const mean = boxMean(prod, gh, gw, r);
      for (let i = 0; i < m; i++) mean[i] -= this.meanI[a][i] * this.meanI[b][i];
      return mean;
    });
    this.invCov = new Float64Array(m * 9);
    for (let i = 0; i < m; i++) {
      const a = cov[0][i] + params.eps, b = cov[1][i], c = cov[2][i];
      const d = cov[3][i] + params.eps, e = cov[4][i], f = cov[5][i] + params.eps;
      // symmetric 3×3 [[a b c] [b d e] [c e f]]: inverse by cofactors
      const A = d * f - e * e, B = c * e - b * f, C = b * e - c * d;
      const det = a * A + b * B + c * C;
      const D = a * f - c * c, E = b * c - a * e, F = a * d - b * b;
      const inv = this.invCov, k = i * 9;
      inv[k] = A / det; inv[k + 1] = B / det; inv[k + 2] = C / det;
      inv[k + 3] = B / det; inv[k + 4] = D / det; inv[k + 5] = E / det;
      inv[k + 6] = C / det; inv[k + 7] = E / det; inv[k + 8] = F / det;
    }
    this.rows = taps(height, gh, s);
    this.cols = taps(width, gw, s);
    const runs: number[] = [];
    for (let x = 0; x < width; x++) {
      const k = runs.length - 4;
      if (k >= 0 && runs[k + 2] === this.cols.lo[x] && runs[k + 3] === this.cols.hi[x]) runs[k + 1] = x + 1;
      else runs.push(x, x + 1, this.cols.lo[x], this.cols.hi[x]);
    }
    this.colRuns = Int32Array.from(runs);
    if ((params.grabcut ?? 0) > 0 && !gc) throw new Error("the refinement asks for a GrabCut pass: pass one");
    this.gc = (params.grabcut ?? 0) > 0 ? gc : null;
    const w = params.select_weights;
    if (params.select === "refined" && (!w || w.length !== 5 || !w.every(Number.isFinite))) {
      throw new Error("the refined-candidate rule needs 5 finite select_weights");
    }
    this.selectWeights = params.select === "refined" ? [...(w as number[])] : null;
  }

  /**
   * Which of the `count` candidates in `logits` (1×K×H×W) to show first, with the decoder's IoUs
   * `ious`: with the refined-candidate rule all are refined and ranked by `refinedIou` (returned as
   * `ious`); else only the one of the highest decoder IoU is refined (the others are null). Ties go to
   * the lowest index, as in `GuidedRefiner.choose` of `backend/services/mask_refine.py`.
   */
  choose(logits: Float32Array, count: number, ious: ArrayLike<number>, points: readonly PromptPoint[] = []):
    { best: number; masks: (Uint8Array | null)[]; ious: number[] } {
    const masks: (Uint8Array | null)[] = new Array(count).fill(null);
    const out = Array.from({ length: count }, (_, k) => ious[k]);
    if (!this.selectWeights || count === 1) {
      let best = 0;
      for (let k = 1; k < count; k++) if (out[k] > out[best]) best = k;
      masks[best] = this.refine(logits, best, points);
      return { best, masks, ious: out };
    }
    let best = 0;
    for (let k = 0; k < count; k++) {
      const m = (masks[k] = this.refine(logits, k, points));
      out[k] = refinedIou(logits, k, m, ious[k], this.selectWeights);
      if (out[k] > out[best]) best = k;
    }
    return { best, masks, ious: out };
  }

  /** Sum s×s blocks of channel `channel` of a full-resolution array with `stride` values per pixel. */
  private blockSum(src: ArrayLike<number>, stride: number, channel: number, offset = 0): Float64Array {
    const { width, height, gw, cellX, cellY } = this;
    const out = new Float64Array(gw * this.gh);
    for (let y = 0; y < height; y++) {
      const row = cellY[y] * gw;
      for (let x = 0, i = offset + y * width * stride + channel; x < width; x++, i += stride) out[row + cellX[x]] += src[i];
    }
    return out;
  }

  /** Average s×s blocks (as `blockSum`); blocks cut by the border average their own pixels. */
  private blockMean(src: Float32Array, stride: number, channel: number, offset = 0): Float64Array {
    const out = this.blockSum(src, stride, channel, offset);
    for (let g = 0; g < out.length; g++) out[g] /= this.counts[g];
    return out;
  }

  /**
   * Each grid cell's colour histogram bin from its block's exact integer channel sums:
   * floor(sum · bins / (255 · count)) per channel, clamped (integers, so Python gets the same bins).
   */
  private binCells(rgba: Uint8ClampedArray | Uint8Array): Int32Array {
    const bins = this.colourBins, m = this.gw * this.gh;
    const sums = [0, 1, 2].map((c) => this.blockSum(rgba, 4, c));
    const out = new Int32Array(m);
    for (let g = 0; g < m; g++) {
      const d = 255 * this.counts[g];
      const q = (c: number) => Math.min(Math.floor((sums[c][g] * bins) / d), bins - 1);
      out[g] = (q(0) * bins + q(1)) * bins + q(2);
    }
    return out;
  }

  /**
   * Adds the colour term to the grid's logits `z` in place: colour × clip(log P(bin | inside) −
   * log P(bin | outside)), the histograms weighted by the decoder's probability and its complement,
   * one pseudo-count per bin (as `colour_term` in Python, sums in cell order).
   */
  private addColourTerm(z: Float64Array, bin: Int32Array): void {
    const k = this.colourBins ** 3, m = z.length, c = this.colourClip;
    const hin = new Float64Array(k), hout = new Float64Array(k);
    let tin = 0, tout = 0;
    for (let i = 0; i < m; i++) {
      const fg = 1 / (1 + Math.exp(-z[i]));
      hin[bin[i]] += fg; hout[bin[i]] += 1 - fg;
      tin += fg; tout += 1 - fg;
    }
    const ratio = new Float64Array(k);
    for (let b = 0; b < k; b++) {
      const v = Math.log((hin[b] + 1) / (tin + k)) - Math.log((hout[b] + 1) / (tout + k));
      ratio[b] = Math.min(Math.max(v, -c), c);
    }
    for (let i = 0; i < m; i++) z[i] += this.colour * ratio[bin[i]];
  }

  /**
   * Refined mask (1 inside) from the decoder's full-size logits of mask `index` in a 1×C×H×W
   * output: the filtered foreground probability above one half; with the GrabCut pass, that mask
   * and the prompt's `points` seed GrabCut, whose labels (nearest pixel) are the mask.
   */
  refine(logits: Float32Array, index = 0, points: readonly PromptPoint[] = []): Uint8Array {
    const { width, height, gw, gh } = this;
    const n = width * height, m = gw * gh;
    // each grid cell's probability: the sigmoid of its block's mean logit (plus the colour term)
    const p = this.blockMean(logits, 1, 0, index * n);
    for (let i = 0; i < m; i++) p[i] = Math.min(Math.max(p[i], -40), 40);
    if (this.cellBin) this.addColourTerm(p, this.cellBin);
    for (let i = 0; i < m; i++) p[i] = 1 / (1 + Math.exp(-p[i]));
    const refined = this.filter(p);
    // when refinement would erase a mask the decoder found (an object thinner than the window, in
    // colours the window cannot tell apart), the decoder's own mask is kept (as the Python side)
    if (!refined) return logitsToMask(logits, height, width, index);
    return this.gc?.cut(refined, points) ?? refined;
  }

  /** The guided filter of grid probabilities `p` at full resolution, above one half; null if empty. */
  private filter(p: Float64Array): Uint8Array | null {
    const { width, height, gw, gh, r } = this;
    const n = width * height, m = gw * gh;
    const [g0, g1, g2] = this.guide, [m0, m1, m2] = this.meanI;
    const ip = [new Float64Array(m), new Float64Array(m), new Float64Array(m)];
    for (let i = 0; i < m; i++) {
      const v = p[i];
      ip[0][i] = g0[i] * v; ip[1][i] = g1[i] * v; ip[2][i] = g2[i] * v;
    }
    const mp = boxMean(p, gh, gw, r);
    const mip = ip.map((x) => boxMean(x, gh, gw, r));
    const a0 = new Float64Array(m), a1 = new Float64Array(m), a2 = new Float64Array(m), b = new Float64Array(m);
    const inv = this.invCov;
    for (let i = 0; i < m; i++) {
      const c0 = mip[0][i] - m0[i] * mp[i], c1 = mip[1][i] - m1[i] * mp[i], c2 = mip[2][i] - m2[i] * mp[i];
      const k = i * 9;
      const x0 = inv[k] * c0 + inv[k + 1] * c1 + inv[k + 2] * c2;
      const x1 = inv[k + 3] * c0 + inv[k + 4] * c1 + inv[k + 5] * c2;
      const x2 = inv[k + 6] * c0 + inv[k + 7] * c1 + inv[k + 8] * c2;
      a0[i] = x0; a1[i] = x1; a2[i] = x2;
      b[i] = mp[i] - (x0 * m0[i] + x1 * m1[i] + x2 * m2[i]);
    }
    const ma = [boxMean(a0, gh, gw, r), boxMean(a1, gh, gw, r), boxMean(a2, gh, gw, r), boxMean(b, gh, gw, r)];
    // A pixel's coefficients blend those of its four nearest grid cells, so when each of the four
    // keeps a·I + b below (above) one half for every colour in the unit cube, so does the pixel:
    // such pixels (most of them, away from the mask's edge) need no arithmetic. The margin is far
    // above rounding, so the result is the same as computing every pixel.
    const side = new Int8Array(m);
    for (let i = 0; i < m; i++) {
      let lo = ma[3][i], hi = lo;
      for (let c = 0; c < 3; c++) { const a = ma[c][i]; if (a < 0) lo += a; else hi += a; }
      side[i] = hi < 0.5 - SURE_MARGIN ? -1 : lo > 0.5 + SURE_MARGIN ? 1 : 0;
    }
    const out = new Uint8Array(n);
    let inside = 0;
    const { lo: r0, hi: r1, wt: wr } = this.rows;
    const { wt: wc } = this.cols;
    const runs = this.colRuns;
    const img = this.image;
    const [A0, A1, A2, B] = ma;
    for (let y = 0; y < height; y++) {
      const t = r0[y] * gw, bt = r1[y] * gw, v = wr[y], row = y * width;
      // columns come in runs that share their two grid columns: decide a run at once when it can be
      for (let k = 0; k < runs.length; k += 4) {
        const x0 = runs[k], x1 = runs[k + 1], ta = t + runs[k + 2], tb = t + runs[k + 3];
        const ba = bt + runs[k + 2], bb = bt + runs[k + 3];
        const sd = side[ta];
        if (sd !== 0 && side[tb] === sd && side[ba] === sd && side[bb] === sd) {
          if (sd > 0) { out.fill(1, row + x0, row + x1); inside += x1 - x0; }
          continue;
        }
        for (let x = x0; x < x1; x++) {
          // along the two grid rows to this column, then between the rows (as the Python side)
          const u = wc[x], o = (row + x) * 3;
          let top = A0[ta] + u * (A0[tb] - A0[ta]), bottom = A0[ba] + u * (A0[bb] - A0[ba]);
          let q = (top + v * (bottom - top)) * img[o];
          top = A1[ta] + u * (A1[tb] - A1[ta]); bottom = A1[ba] + u * (A1[bb] - A1[ba]);
          q += (top + v * (bottom - top)) * img[o + 1];
          top = A2[ta] + u * (A2[tb] - A2[ta]); bottom = A2[ba] + u * (A2[bb] - A2[ba]);
          q += (top + v * (bottom - top)) * img[o + 2];
          top = B[ta] + u * (B[tb] - B[ta]); bottom = B[ba] + u * (B[bb] - B[ba]);
          q += top + v * (bottom - top);
          if (q > 0.5) { out[row + x] = 1; inside++; }
        }
      }
    }
    return inside === 0 ? null : out;
  }
}
