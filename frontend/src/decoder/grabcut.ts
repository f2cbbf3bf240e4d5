/**
 * The GrabCut pass of the mask refinement (see `backend/services/mask_refine.py`, which the
 * evaluation and the simulated annotators run): the refined mask seeds OpenCV's GrabCut on the
 * image at `grabcut` pixels on its long side (inside: probably foreground, outside: probably
 * background, clicks: discs of sure foreground / background), and its labels, taken back to full
 * resolution, are the mask. OpenCV.js is the same C++ code compiled to WASM; it is loaded only when a model's
 * refinement asks for the pass, and its random generator is seeded before every call, as in Python,
 * so both give the same masks.
 */
import type { PromptPoint } from "./protocol";

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
}

/** Per-image state of the pass: the image at the pass's size. Call `dispose` when done with it. */
export class GrabCutPass {
  readonly width: number;
  readonly height: number;
  readonly gw: number;
  readonly gh: number;
  private readonly cv: OpenCv;
  private readonly params: GrabCutParams;
  private image: OpenCv;
  /** for each full-resolution row / column, the pass's pixel under its centre */
  private readonly rowOf: Int32Array;
  private readonly colOf: Int32Array;

  constructor(cv: OpenCv, rgba: Uint8ClampedArray | Uint8Array, width: number, height: number, params: GrabCutParams) {
    this.cv = cv;
    this.params = params;
    this.width = width;
    this.height = height;
    const s = Math.min(params.grabcut / Math.max(width, height), 1);
    this.gw = Math.max(1, Math.floor(width * s + 0.5));
    this.gh = Math.max(1, Math.floor(height * s + 0.5));
    const gw = this.gw, gh = this.gh;
    this.rowOf = Int32Array.from({ length: height }, (_, y) => Math.min(Math.floor(((y + 0.5) * gh) / height), gh - 1));
    this.colOf = Int32Array.from({ length: width }, (_, x) => Math.min(Math.floor(((x + 0.5) * gw) / width), gw - 1));
    const full = new cv.Mat(height, width, cv.CV_8UC4);
    const rgb = new cv.Mat();
    try {
      full.data.set(rgba);
      cv.cvtColor(full, rgb, cv.COLOR_RGBA2RGB);
      this.image = new cv.Mat();
      cv.resize(rgb, this.image, new cv.Size(this.gw, this.gh), 0, 0, cv.INTER_AREA);
    } finally {
      full.delete();
      rgb.delete();
    }
  }

  /**
   * The mask GrabCut gives (1 inside, full size: each pixel takes the label of the pass's pixel under
   * its centre) seeded by `mask` (1 inside, full size) and `points` (pixels), or null when the seeds
   * leave GrabCut nothing to do (all inside or all outside), OpenCV refuses them, or the cut is empty.
   */
  cut(mask: Uint8Array, points: readonly PromptPoint[]): Uint8Array | null {
    const { cv, width, height, gw, gh } = this;
    if (mask.length !== width * height) throw new Error(`mask has ${mask.length} pixels, not ${width}×${height}`);
    const full = new cv.Mat(height, width, cv.CV_32FC1);
    const small = new cv.Mat();
    const seeds = new cv.Mat(gh, gw, cv.CV_8UC1);
    const bgd = new cv.Mat(), fgd = new cv.Mat();
    try {
      const f = full.data32F as Float32Array;
      for (let i = 0; i < f.length; i++) f[i] = mask[i];
      cv.resize(full, small, new cv.Size(gw, gh), 0, 0, cv.INTER_AREA);
      const sm = small.data32F as Float32Array, sd = seeds.data as Uint8Array;
      for (let i = 0; i < sd.length; i++) sd[i] = sm[i] > 0.5 ? GC_PR_FGD : GC_PR_BGD;
      const sx = gw / width, sy = gh / height;
      for (const p of points) {
        if (p.label !== 0 && p.label !== 1) continue;
        const centre = new cv.Point(Math.floor(p.x * sx + 0.5), Math.floor(p.y * sy + 0.5));
        cv.circle(seeds, centre, this.params.grabcut_disc, new cv.Scalar(p.label === 1 ? GC_FGD : GC_BGD), -1);
      }
      let fg = 0;
      for (let i = 0; i < sd.length; i++) if (sd[i] === GC_FGD || sd[i] === GC_PR_FGD) fg++;
      if (fg === 0 || fg === sd.length) return null;
      cv.setRNGSeed(GRABCUT_SEED);
      try {
        cv.grabCut(this.image, seeds, new cv.Rect(0, 0, 1, 1), bgd, fgd, this.params.grabcut_iters, cv.GC_INIT_WITH_MASK);
      } catch {
        return null; // a degenerate input OpenCV refuses: the refined mask stands (as in Python)
      }
      const after = seeds.data as Uint8Array;
      const out = new Uint8Array(width * height);
      let inside = 0;
      for (let y = 0; y < height; y++) {
        const src = this.rowOf[y] * gw, row = y * width;
        for (let x = 0; x < width; x++) {
          const label = after[src + this.colOf[x]];
          if (label === GC_FGD || label === GC_PR_FGD) { out[row + x] = 1; inside++; }
        }
      }
      return inside > 0 ? out : null;
    } finally {
      full.delete(); small.delete(); seeds.delete(); bgd.delete(); fgd.delete();
    }
  }

  dispose(): void {
    this.image.delete();
  }
}
