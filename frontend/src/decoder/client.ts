/**
 * The page side of the decoder: starts the Web Worker, matches replies to requests by id, and
 * runs one decode at a time in priority order: clicks first, then the latest hover (a newer hover
 * or a click drops a hover that has not started, so previews follow the decoder's speed and a
 * click never waits behind a queue of stale previews). When decodes are slow (over
 * `HOVER_REST_MS`), a hover starts only once the pointer has rested that long, so points it merely
 * passes through never occupy the decoder. A click on the point the pointer rested on reuses that
 * hover's decode, finished or still running, instead of decoding again: for a first click the hover
 * is the visible preview; for a follow-up click the annotator decodes the prompt the click would
 * make ahead of time, without showing it (`speculativeLabels`).
 *
 * A click may ask for its masks before they are refined with the image (`decode(..., deferRefine)`):
 * the page draws the decoder's mask at once and then asks for it refined (`refineCandidate`), a
 * request that runs after any waiting click and before hovers, and is dropped when the page no
 * longer wants it by the time it would start (the annotator clicked again meanwhile).
 */
import type { DecodedMask, DecodeTimings, DecoderRequest, DecoderResponse, Prompt, PromptBox, PromptPoint } from "./protocol";
import type { RefineParams } from "./refine";

type Pending = { resolve: (r: DecoderResponse) => void; reject: (e: Error) => void };
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

export interface DecodeResult {
  masks: DecodedMask[]; width: number; height: number;
  /** time inside the worker, and its split */
  ms: number; timings: DecodeTimings;
  /** the prompt that was decoded (a reused hover's point can differ from the click by < 1 px) */
  prompt: Prompt;
  /** true when a hover decode of the same point answered the click */
  reused: boolean;
}

interface Job {
  prompt: Prompt; maskInput: Float32Array | null; multimask: boolean; deferRefine?: boolean;
  resolve: (r: DecodeResult | null) => void; reject: (e: Error) => void;
}

interface RefineJob { mask: DecodedMask; wanted: () => boolean; resolve: (ok: boolean) => void }

/** Pointer positions closer than this (image pixels) count as the same click. */
export const SAME_POINT_PX = 0.75;
/** With decodes slower than this, a hover waits for the pointer to rest this long before decoding. */
export const HOVER_REST_MS = 40;

/** The decoder's candidates, best predicted IoU first (the order the annotator cycles them in). */
export function sortByIou(masks: DecodedMask[]): DecodedMask[] {
  return [...masks].sort((a, b) => b.iou - a.iou);
}

/**
 * Can a decode of `ahead` stand for `click`? The same points, except that the last one (the new
 * click) may be up to `tolerance` away, with the same label; and no box on either, or boxes whose
 * corners are that close (the box a drag ends with and the one decoded where it paused).
 */
export function samePrompt(ahead: Prompt, click: Prompt, tolerance = SAME_POINT_PX): boolean {
  const n = click.points.length;
  if (ahead.points.length !== n || (n === 0 && !click.box)) return false;
  const near = (a: number, b: number): boolean => Math.abs(a - b) <= tolerance;
  const [p, q] = [ahead.box, click.box];
  if ((p === null) !== (q === null)) return false;
  if (p && q && !(near(p.x0, q.x0) && near(p.y0, q.y0) && near(p.x1, q.x1) && near(p.y1, q.y1))) return false;
  for (let i = 0; i < n - 1; i++) {
    const [a, b] = [ahead.points[i], click.points[i]];
    if (a.x !== b.x || a.y !== b.y || a.label !== b.label) return false;
  }
  if (n === 0) return true;
  const [a, b] = [ahead.points[n - 1], click.points[n - 1]];
  return a.label === b.label && near(a.x, b.x) && near(a.y, b.y);
}

/**
 * The labels to decode ahead of a follow-up click at a point, most likely first: a click inside the
 * current mask usually removes (negative), outside it usually adds (positive), as the evaluation's
 * robot clicker does. The annotator decodes the first while the pointer rests, then the second.
 */
export function speculativeLabels(inside: boolean): [0 | 1, 0 | 1] {
  return inside ? [0, 1] : [1, 0];
}

/** Whether image point `p` lies inside `mask` (row-major, `width` wide; null: no mask). */
export function insideMask(mask: Uint8Array | null, width: number, p: { x: number; y: number }): boolean {
  return !!mask && mask[Math.floor(p.y) * width + Math.floor(p.x)] > 0;
}

/** How many decodes made ahead of a click are kept for reuse (the two labels at the resting point). */
const KEPT_AHEAD = 2;

/**
 * WASM threads for the decoder on a machine with `cores` logical cores: every core up to 2, else
 * half of them (at least 2, at most 4), which leaves the page and other tabs room. The main thread
 * is idle while the worker decodes: on an idle 2-core VM two threads answered a refine click in
 * 121 ms p50 against 191 ms for one (benchmarks/bench_browser_decoder.py, 2026-12-03).
 */
export function decoderThreads(cores: number): number {
  const n = Math.max(1, Math.floor(cores));
  return n <= 2 ? n : Math.min(4, Math.max(2, Math.floor(n / 2)));
}

export class DecoderClient {
  private worker: Worker;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private clicks: Job[] = [];
  private refines: RefineJob[] = [];
  /** refinements asked for and not finished, so a mask asked twice is refined once */
  private refining = new Map<DecodedMask, Promise<boolean>>();
  private hoverJob: Job | null = null;
  /** a hover waiting for the pointer to rest */
  private resting: { job: Job; timer: ReturnType<typeof setTimeout> } | null = null;
  private running = false;
  /** `run()` time of the last decode (ms) */
  lastRunMs = 0;
  /** recent hover decodes a click may reuse, newest last */
  private ahead: { key: string; prompt: Prompt; maskInput: Float32Array | null; multimask: boolean; result: Promise<DecodeResult | null> }[] = [];
  private embeddingKey = "";
  multimask = false;
  threads = 1;

  constructor() {
    this.worker = new Worker(new URL("./decoder.worker.ts", import.meta.url), { type: "module" });
    this.worker.onmessage = (e: MessageEvent<DecoderResponse>) => {
      const p = this.pending.get(e.data.id);
      if (!p) return;
      this.pending.delete(e.data.id);
      if (e.data.type === "error") p.reject(new Error(e.data.message));
      else p.resolve(e.data);
    };
    this.worker.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(new Error(`decoder worker failed: ${e.message}`));
      this.pending.clear();
    };
  }

  private request(msg: WithoutId<DecoderRequest>, transfer: Transferable[] = []): Promise<DecoderResponse> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id } as DecoderRequest, transfer);
    });
  }

  /** Load the decoder(s); threads > 1 needs cross-origin isolation (SharedArrayBuffer). */
  async init(modelUrl: string, multimaskUrl: string | null, numThreads?: number): Promise<void> {
    const canThread = typeof SharedArrayBuffer !== "undefined" && self.crossOriginIsolated;
    const threads = canThread ? numThreads ?? decoderThreads(navigator.hardwareConcurrency || 1) : 1;
    const wasmPaths = new URL("/ort/", location.href).href;
    const r = await this.request({ type: "init", modelUrl, multimaskUrl, numThreads: threads, wasmPaths });
    if (r.type === "ready") {
      this.multimask = r.multimask;
      this.threads = r.threads;
    }
  }

  /** Hand an embedding (1×256×64×64) to the worker; `key` names it (image id + model version). */
  async setEmbedding(key: string, data: Float32Array, shape: number[], origSize: [number, number], inputSize: [number, number],
    guide: { rgba: Uint8ClampedArray; params: RefineParams } | null = null): Promise<void> {
    const copy = data.slice();
    this.ahead = [];
    const transfer: Transferable[] = [copy.buffer];
    if (guide) transfer.push(guide.rgba.buffer as ArrayBuffer);
    await this.request({ type: "setEmbedding", key, data: copy, shape, origSize, inputSize, guide }, transfer);
    this.embeddingKey = key;
  }

  /**
   * Switch the refinement of masks with the image on or off (it applies only when `setEmbedding` got
   * the image). Decodes made ahead with the old setting are dropped, so no click reuses them.
   */
  async setRefine(enabled: boolean): Promise<void> {
    this.ahead = [];
    this.dropHover();
    await this.request({ type: "setRefine", enabled });
  }

  /**
   * Decode a click now (ahead of any hover). When a hover decoded the same prompt (`samePrompt`) with
   * the same mask input (the same array) on this embedding, its result answers the click, finished
   * or still running; otherwise a waiting hover is dropped. With `deferRefine` a fresh decode comes
   * back with the decoder's own masks (`refined` false, when masks are refined at all): refine the
   * shown one with `refineCandidate`. A reused hover decode comes as the hover asked for it.
   */
  async decode(prompt: Prompt, maskInput: Float32Array | null, multimask = false, deferRefine = false): Promise<DecodeResult> {
    const mm = multimask && this.multimask;
    const hover = this.ahead.find((a) => a.key === this.embeddingKey && a.multimask === mm && a.maskInput === maskInput
      && samePrompt(a.prompt, prompt));
    if (hover) {
      const r = await hover.result.catch(() => null);
      if (r) return { ...r, reused: true };
    }
    this.dropHover();
    const r = await new Promise<DecodeResult | null>((resolve, reject) => {
      this.clicks.push({ prompt, maskInput, multimask: mm, deferRefine, resolve, reject });
      void this.pump();
    });
    if (!r) throw new Error("the decode was cancelled");
    return r;
  }

  /**
   * A hover preview: latest wins; resolves null when a newer hover or a click replaced it before it
   * ran. With `deferRefine` it comes back unrefined, as `decode`'s does (a click reusing it gets it so).
   */
  decodeLatest(prompt: Prompt, maskInput: Float32Array | null, multimask = false, deferRefine = false): Promise<DecodeResult | null> {
    const mm = multimask && this.multimask;
    this.dropHover();
    let job!: Job;
    const result = new Promise<DecodeResult | null>((resolve, reject) => { job = { prompt, maskInput, multimask: mm, deferRefine, resolve, reject }; });
    const queue = (): void => {
      this.resting = null;
      this.hoverJob = job;
      this.ahead = [...this.ahead, { key: this.embeddingKey, prompt, maskInput, multimask: mm, result }].slice(-KEPT_AHEAD);
      void this.pump();
    };
    if (this.lastRunMs > HOVER_REST_MS) this.resting = { job, timer: setTimeout(queue, HOVER_REST_MS) };
    else queue();
    return result.catch(() => null);
  }

  /**
   * With prompts on the object (`base`), decode what a click at `p` would make, so that the click
   * reuses it (`decode`); nothing is shown. The likelier label first (`speculativeLabels`: negative
   * inside `base.mask`, an H×W array `width` wide, positive outside), then the other, each only
   * while `current()` says the pointer and the object are still as they were. Resolves to the
   * number of decodes made. With `deferRefine` each decode comes back before its refinement, which
   * follows it (the likelier label decoded, refined, then the other): a click during the refinement
   * draws the decoder's mask at once. A refinement is dropped when `current()` no longer holds, and a
   * click reusing the decode asks for it itself.
   */
  async decodeAhead(base: { points: PromptPoint[]; box: PromptBox | null; mask: Uint8Array | null; lowRes: Float32Array | null },
    p: { x: number; y: number }, width: number, current: () => boolean, deferRefine = false): Promise<number> {
    let made = 0;
    for (const label of speculativeLabels(insideMask(base.mask, width, p))) {
      if (!current()) break;
      const r = await this.decodeLatest({ points: [...base.points, { x: p.x, y: p.y, label }], box: base.box }, base.lowRes, false, deferRefine);
      if (!r) break; // a newer hover or a click took the decoder first
      made++;
      const m = r.masks[0];
      if (m && !m.refined && !(await this.refineCandidate(m, current))) break;
    }
    return made;
  }

  private dropHover(): void {
    if (this.resting) {
      clearTimeout(this.resting.timer);
      this.resting.job.resolve(null);
      this.resting = null;
    }
    this.hoverJob?.resolve(null);
    this.hoverJob = null;
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    if (!this.clicks.length && this.refines.length) {
      const rj = this.refines.shift()!;
      if (rj.mask.refined || !rj.wanted()) {
        rj.resolve(rj.mask.refined);
        void this.pump();
        return;
      }
      this.running = true;
      try {
        rj.resolve(await this.refineNow(rj.mask));
      } finally {
        this.running = false;
        void this.pump();
      }
      return;
    }
    const job = this.clicks.shift() ?? this.hoverJob;
    if (!job) return;
    if (job === this.hoverJob) this.hoverJob = null;
    this.running = true;
    try {
      const r = await this.request({
        type: "decode", key: this.embeddingKey, prompt: job.prompt,
        maskInput: job.maskInput ? job.maskInput.slice() : null, multimask: job.multimask,
        ...(job.deferRefine ? { deferRefine: true } : {}),
      });
      if (r.type !== "decoded") throw new Error(`unexpected decoder reply ${r.type}`);
      this.lastRunMs = r.timings.run;
      job.resolve({ masks: r.masks, width: r.width, height: r.height, ms: r.ms, timings: r.timings, prompt: job.prompt, reused: false });
    } catch (err) {
      job.reject(err as Error);
    } finally {
      this.running = false;
      void this.pump();
    }
  }

  /**
   * Refine a mask the worker left unrefined (see `DecodedMask.refined`), in place: its `mask` array
   * gets the refined mask, so every state holding it shows it. It waits for the clicks already asked
   * for and goes before hovers; when it would start and `wanted()` says no, it is dropped (false, the
   * mask stays as it was and may be asked for again). False also when it cannot be done (the worker
   * no longer holds that decode, e.g. another image was loaded). `lastRefineMs` is its time in the worker.
   */
  refineCandidate(m: DecodedMask, wanted: () => boolean = () => true): Promise<boolean> {
    if (m.refined) return Promise.resolve(true);
    const asked = this.refining.get(m);
    if (asked) {
      // a wanted request must not ride on one that may be dropped: queue it again behind it
      return asked.then((ok) => (ok || m.refined ? m.refined : this.refineCandidate(m, wanted)));
    }
    const p = new Promise<boolean>((resolve) => {
      this.refines.push({ mask: m, wanted, resolve });
      void this.pump();
    }).finally(() => this.refining.delete(m));
    this.refining.set(m, p);
    return p;
  }

  /** worker time of the last refinement asked through `refineCandidate` (ms) */
  lastRefineMs = 0;

  private async refineNow(m: DecodedMask): Promise<boolean> {
    try {
      const r = await this.request({ type: "refineCandidate", key: this.embeddingKey, decodeId: m.decodeId, index: m.index });
      if (r.type !== "refinedMask" || r.mask.length !== m.mask.length) return false;
      m.mask.set(r.mask);
      m.refined = true;
      m.refineMs = r.ms;
      this.lastRefineMs = r.ms;
      return true;
    } catch {
      return false;
    }
  }

  terminate(): void { this.worker.terminate(); }
}
