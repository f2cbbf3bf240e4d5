/**
 * The GrabCut pass of the mask refinement (see `backend/services/mask_refine.py`, which the
 * evaluation and the simulated annotators run): the refined mask seeds OpenCV's GrabCut on the
 * image at `grabcut` pixels on its long side (inside: probably foreground, outside: probably
 * background, clicks: discs of sure foreground / background), and its labels, taken back to full
 * resolution, are the mask. With `grabcut_crop` the pass sees only a window around the mask and the
 * positive clicks (`cropBox`), at `grabcut` pixels on its long side (never enlarged). OpenCV.js is
 * the same C++ code compiled to WASM; it is loaded only when a model's refinement asks for the pass, and its random generator is seeded before every call, as in Python,
 * so both give the same masks.
 */
import type { PromptPoint } from "./protocol";
import type { RefineParams } from "./refine";

/** seed of OpenCV's random generator before every GrabCut call (`GRABCUT_SEED` in Python) */
export const GRABCUT_SEED = 12345;
const GC_BGD = 0, GC_FGD = 1, GC_PR_BGD = 2, GC_PR_FGD = 3;

// OpenCV.js has no usable typings here; the few calls below are checked by the tests.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OpenCv = any;

let loading: Promise<{ cv: OpenCv }> | null = null;

/**
 * OpenCV.js, loaded once (a 7 MB script with its WASM inlined) and ready to call. It is a UMD script
 * for classic (sloppy-mode) evaluation: bundled as an ES module it would assign an undeclared global
 * and, worse, its module namespace would copy the Emscripten module's `then`, so `import()` would
 * chase that thenable forever. So its text is bundled as a string and run as a function with a
 * CommonJS-style `module`, which is how it hands back `cv`.
 */
export async function loadOpenCv(): Promise<OpenCv> {
  loading ??= import("@techstark/opencv-js/dist/opencv.js?raw").then((m) => {
    const holder: { exports: OpenCv } = { exports: {} };
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    new Function("module", "exports", m.default)(holder, holder.exports);
    return readyOpenCv(holder.exports);
  });
  return (await loading).cv;
}

/** `{ cv }` once the OpenCV.js module `cv` has initialised its runtime, with its `then` removed. */
export function readyOpenCv(cv: OpenCv): Promise<{ cv: OpenCv }> {
  return new Promise((resolve) => {
    const done = () => { delete cv.then; resolve({ cv }); };
    if (cv.Mat) done();
    else cv.onRuntimeInitialized = done;
  });
}

export interface GrabCutParams {
  /** long side of the pass in pixels (0: off), GrabCut iterations, radius of the clicks' discs */
  grabcut: number;
  grabcut_iters: number;
  grabcut_disc: number;
  /** the window: 0 or absent = the whole image; c > 0 = the box around the mask and the positive
   * clicks widened by c times its longer side on every side */
  grabcut_crop?: number;
}

/**
 * The GrabCut pass `params` ask for on this image (OpenCV.js loaded on first use by `load`), or null
 * when they ask for none. When OpenCV.js cannot be loaded the masks are still refined, without the
 * pass, and the console says why.
 */
export async function openGrabCutPass(rgba: Uint8ClampedArray, width: number, height: number, params: RefineParams,
  load: () => Promise<OpenCv> = loadOpenCv): Promise<GrabCutPass | null> {
  if (!((params.grabcut ?? 0) > 0)) return null;
  try {
    const cv = await load();
    return new GrabCutPass(cv, rgba, width, height, {
      grabcut: params.grabcut ?? 0, grabcut_iters: params.grabcut_iters ?? 2, grabcut_disc: params.grabcut_disc ?? 5,
      grabcut_crop: params.grabcut_crop ?? 0,
    });
  } catch (err) {
    console.warn(`masks are refined without the GrabCut pass: OpenCV.js failed (${(err as Error).message ?? err})`);
    return null;
  }
}

/** A window of the image: x0, y0 inclusive, x1, y1 exclusive. */
export interface Box { x0: number; y0: number; x1: number; y1: number }

/**
 * The pass's window for `mask` (1 inside, width×height) and `points`: the box around the mask and the
 * positive clicks widened on every side by `crop` times its longer side (rounded up), clipped to the
 * image; null when there is neither mask nor positive click (`crop_box` in Python).
 */
export function cropBox(mask: Uint8Array, width: number, height: number, points: readonly PromptPoint[],
  crop: number): Box | null {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let first = -1, last = -1;
    for (let x = 0; x < width; x++) {
      if (mask[row + x]) { if (first < 0) first = x; last = x; }
    }
    if (first >= 0) {
      if (y < y0) y0 = y;
      y1 = y;
      if (first < x0) x0 = first;
      if (last > x1) x1 = last;
    }
  }
  for (const p of points) {
    if (p.label !== 1) continue;
    const x = Math.min(Math.max(Math.floor(p.x), 0), width - 1), y = Math.min(Math.max(Math.floor(p.y), 0), height - 1);
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 < 0) return null;
  x1 += 1; y1 += 1;
  const m = Math.ceil(crop * Math.max(x1 - x0, y1 - y0));
  return { x0: Math.max(0, x0 - m), y0: Math.max(0, y0 - m), x1: Math.min(width, x1 + m), y1: Math.min(height, y1 + m) };
}

/** Width and height of a `w`×`h` window at `size` pixels on its long side, never enlarged. */
function passSize(w: number, h: number, size: number): [number, number] {
  const s = Math.min(size / Math.max(w, h), 1);
  return [Math.max(1, Math.floor(w * s + 0.5)), Math.max(1, Math.floor(h * s + 0.5))];
}

/**
 * Per-image state of the pass: the image at the pass's size (whole-image pass) or at full resolution
 * (cropped pass). Call `dispose` when done with it.
 */
export class GrabCutPass {
  readonly width: number;
  readonly height: number;
  private readonly cv: OpenCv;
  private readonly params: GrabCutParams;
  /** RGB: at the pass's size (whole-image pass) or full size (cropped pass) */
  private image: OpenCv;
  private readonly crop: number;

  constructor(cv: OpenCv, rgba: Uint8ClampedArray | Uint8Array, width: number, height: number, params: GrabCutParams) {
    this.cv = cv;
    this.params = params;
    this.width = width;
    this.height = height;
    this.crop = params.grabcut_crop ?? 0;
    const full = new cv.Mat(height, width, cv.CV_8UC4);
    const rgb = new cv.Mat();
    let keep = false;
    try {
      full.data.set(rgba);
      cv.cvtColor(full, rgb, cv.COLOR_RGBA2RGB);
      if (this.crop > 0) {
        this.image = rgb;
        keep = true;
      } else {
        const [gw, gh] = passSize(width, height, params.grabcut);
        this.image = new cv.Mat();
        cv.resize(rgb, this.image, new cv.Size(gw, gh), 0, 0, cv.INTER_AREA);
      }
    } finally {
      full.delete();
      if (!keep) rgb.delete();
    }
  }

  /**
   * The mask GrabCut gives (1 inside, full size: each pixel takes the label of the pass's pixel under
   * its centre; outside a cropped pass's window, 0) seeded by `mask` (1 inside, full size) and `points`
   * (pixels), or null when the seeds leave GrabCut nothing to do (all inside or all outside, or no
   * window), OpenCV refuses them, or the cut is empty.
   */
  cut(mask: Uint8Array, points: readonly PromptPoint[]): Uint8Array | null {
    const { cv, width, height } = this;
    if (mask.length !== width * height) throw new Error(`mask has ${mask.length} pixels, not ${width}×${height}`);
    const box = this.crop > 0 ? cropBox(mask, width, height, points, this.crop) : { x0: 0, y0: 0, x1: width, y1: height };
    if (!box) return null;
    const { x0, y0 } = box, cw = box.x1 - box.x0, ch = box.y1 - box.y0;
    const [gw, gh] = passSize(cw, ch, this.params.grabcut);
    const region = new cv.Mat(ch, cw, cv.CV_32FC1);
    const small = new cv.Mat();
    const seeds = new cv.Mat(gh, gw, cv.CV_8UC1);
    const bgd = new cv.Mat(), fgd = new cv.Mat();
    let window: OpenCv = null;
    try {
      if (this.crop > 0) {
        const roi = this.image.roi(new cv.Rect(x0, y0, cw, ch));
        window = new cv.Mat();
        try {
          if (gw === cw && gh === ch) roi.copyTo(window);
          else cv.resize(roi, window, new cv.Size(gw, gh), 0, 0, cv.INTER_AREA);
        } finally {
          roi.delete();
        }
      }
      const f = region.data32F as Float32Array;
      for (let y = 0; y < ch; y++) {
        const src = (y0 + y) * width + x0, dst = y * cw;
        for (let x = 0; x < cw; x++) f[dst + x] = mask[src + x];
      }
      cv.resize(region, small, new cv.Size(gw, gh), 0, 0, cv.INTER_AREA);
      const sm = small.data32F as Float32Array, sd = seeds.data as Uint8Array;
      for (let i = 0; i < sd.length; i++) sd[i] = sm[i] > 0.5 ? GC_PR_FGD : GC_PR_BGD;
      const sx = gw / cw, sy = gh / ch;
      for (const p of points) {
        if (p.label !== 0 && p.label !== 1) continue;
        const centre = new cv.Point(Math.floor((p.x - x0) * sx + 0.5), Math.floor((p.y - y0) * sy + 0.5));
        cv.circle(seeds, centre, this.params.grabcut_disc, new cv.Scalar(p.label === 1 ? GC_FGD : GC_BGD), -1);
      }
      let fg = 0;
      for (let i = 0; i < sd.length; i++) if (sd[i] === GC_FGD || sd[i] === GC_PR_FGD) fg++;
      if (fg === 0 || fg === sd.length) return null;
      cv.setRNGSeed(GRABCUT_SEED);
      try {
        cv.grabCut(window ?? this.image, seeds, new cv.Rect(0, 0, 1, 1), bgd, fgd, this.params.grabcut_iters,
          cv.GC_INIT_WITH_MASK);
      } catch {
        return null; // a degenerate input OpenCV refuses: the refined mask stands (as in Python)
      }
      const after = seeds.data as Uint8Array;
      const colOf = Int32Array.from({ length: cw }, (_, x) => Math.min(Math.floor(((x + 0.5) * gw) / cw), gw - 1));
      const out = new Uint8Array(width * height);
      let inside = 0;
      for (let y = 0; y < ch; y++) {
        const src = Math.min(Math.floor(((y + 0.5) * gh) / ch), gh - 1) * gw, row = (y0 + y) * width + x0;
        for (let x = 0; x < cw; x++) {
          const label = after[src + colOf[x]];
          if (label === GC_FGD || label === GC_PR_FGD) { out[row + x] = 1; inside++; }
        }
      }
      return inside > 0 ? out : null;
    } finally {
      region.delete(); small.delete(); seeds.delete(); bgd.delete(); fgd.delete();
      window?.delete();
    }
  }

  dispose(): void {
    this.image.delete();
  }
}
