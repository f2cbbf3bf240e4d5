/**
 * Decoder latency benchmark page (driven by benchmarks/bench_browser_decoder.py): loads a decoder
 * ONNX (and optionally the multimask one) and a wire-format embedding given in the query string,
 * then measures, for every click on the canvas, the time from the mouse event to the mask drawn,
 * through the same DecoderClient and canvas code as the annotator. `mode`:
 * - `cold`: a first click with no hover before it (multimask decoder when given, best candidate drawn);
 * - `hover`: the annotator's first click: mouse moves run hover previews, a click on the point the
 *   pointer rested on reuses that decode (finished or still running);
 * - `refine`: follow-up clicks: each click adds a point and feeds back the previous low-res logits
 *   (single-mask decoder), four points per object, then a fresh one;
 * - `ahead`: `refine`'s objects, every click after a rest, as the annotator runs them: the first
 *   click of an object previewed by hovers (as `hover`), the follow-ups decoded ahead while the
 *   pointer rests (`DecoderClient.decodeAhead`, both labels, likelier first). With `labels=buttons`
 *   a right click is negative; with `labels=mask` a follow-up click is negative inside the current
 *   mask and positive outside it (the evaluation's robot clicker: take out what is wrong, add what is missing).
 * With `progressive=1` (and `refine`), a click that is decoded afresh draws the decoder's mask at once
 * and the refined one when it comes, as the annotator does; `refinedLatencies` times the second.
 */
import { AnnotationCanvas } from "../canvas/canvas";
import { DecoderClient, insideMask, sortByIou, type DecodeResult } from "../decoder/client";
import type { PromptPoint } from "../decoder/protocol";
import { imagePixels, type RefineParams } from "../decoder/refine";
import { maskWorkSize } from "../decoder/masks";
import { parseEmbedding } from "../embedding";

interface BenchState {
  ready: boolean; error: string | null; mode: string; threads: number; embeddingBytes: number; isolated: boolean; multimask: boolean;
  /** per click: event → mask drawn; worker run(); worker post-processing; drawing; answered by a hover decode */
  latencies: number[]; decodeMs: number[]; postMs: number[]; drawMs: number[]; reused: boolean[]; maskPixels: number[];
  /** per click: the edge-aware refinement (0 when off; with `progressive`, its own request's time) */
  refineMs: number[]; refined: boolean; progressive: boolean;
  /** per click: event → refined mask drawn (the same as `latencies` when it came refined or refinement is off) */
  refinedLatencies: number[];
  hovers: number;
}
const state: BenchState = {
  ready: false, error: null, mode: "cold", threads: 0, embeddingBytes: 0, isolated: self.crossOriginIsolated, multimask: false,
  latencies: [], decodeMs: [], postMs: [], drawMs: [], reused: [], maskPixels: [], refineMs: [], refined: false, hovers: 0,
  progressive: false, refinedLatencies: [],
};
(window as unknown as { bench: BenchState }).bench = state;

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const model = q.get("model");
  const emb = q.get("embedding");
  if (!model || !emb) throw new Error("bench.html needs ?model=<decoder.onnx>&embedding=<blob>[&multimask=<onnx>][&mode=cold|hover|refine]");
  const threads = Number(q.get("threads") ?? "1");
  const mode = (state.mode = q.get("mode") ?? "cold");
  if (!["cold", "hover", "refine", "ahead"].includes(mode)) throw new Error(`unknown mode ${mode}`);
  const labels = q.get("labels") ?? "buttons";
  if (!["buttons", "mask"].includes(labels)) throw new Error(`unknown labels ${labels}`);
  const status = document.getElementById("status")!;
  const el = document.getElementById("stage") as HTMLCanvasElement;

  const res = await fetch(emb);
  if (!res.ok) throw new Error(`embedding ${emb}: HTTP ${res.status}`);
  const embedding = parseEmbedding(await res.arrayBuffer());
  state.embeddingBytes = embedding.byteLength;
  const [h, w] = embedding.header.orig_size;

  const decoder = new DecoderClient();
  await decoder.init(model, q.get("multimask"), threads);
  state.threads = decoder.threads;
  state.multimask = decoder.multimask;
  const canvas = new AnnotationCanvas(el);
  let img: CanvasImageSource;
  const imageUrl = q.get("image");
  if (imageUrl) {
    const r = await fetch(imageUrl);
    if (!r.ok) throw new Error(`image ${imageUrl}: HTTP ${r.status}`);
    img = await createImageBitmap(await r.blob());
  } else {
    const off = new OffscreenCanvas(w, h);
    const ictx = off.getContext("2d")!;
    const grad = ictx.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, "#345");
    grad.addColorStop(1, "#9ab");
    ictx.fillStyle = grad;
    ictx.fillRect(0, 0, w, h);
    img = off;
  }
  canvas.setImage(img, w, h);
  // `refine=WORK,RADIUS,EPS[,COLOUR,BINS,CLIP[,GRABCUT,ITERS,DISC[,CROP]]]` refines every mask with the image,
  // as the annotator does; `select=refined|head&select_weights=W0,..,W4` ranks a first click's candidates
  const refineSpec = q.get("refine");
  let guide: { rgba: Uint8ClampedArray; params: RefineParams } | null = null;
  if (refineSpec) {
    const [work, radius, eps, colour = 0, bins = 16, clip = 3, grabcut = 0, iters = 2, disc = 5, crop = 0] =
      refineSpec.split(",").map(Number);
    const [wh, ww] = maskWorkSize(h, w);
    guide = {
      rgba: imagePixels(img, ww, wh),
      params: { method: "guided", work_size: work, radius, eps, colour, colour_bins: bins, colour_clip: clip,
        grabcut, grabcut_iters: iters, grabcut_disc: disc, grabcut_crop: crop,
        select: q.get("select") === "refined" ? "refined" : "head",
        select_weights: (q.get("select_weights") ?? "").split(",").filter((v) => v !== "").map(Number) },
    };
  }
  state.refined = guide !== null;
  state.progressive = state.refined && q.get("progressive") === "1";
  await decoder.setEmbedding("bench", embedding.data, embedding.header.shape, embedding.header.orig_size, embedding.header.input_size, guide);

  // warm-up so the first measured click does not pay for WASM compilation
  await decoder.decode({ points: [{ x: w / 2, y: h / 2, label: 1 }], box: null }, null, true);
  await decoder.decode({ points: [{ x: w / 2, y: h / 2, label: 1 }, { x: w / 3, y: h / 3, label: 1 }], box: null }, new Float32Array(256 * 256));

  let points: PromptPoint[] = [];
  let lowRes: Float32Array | null = null;
  let mask: Uint8Array | null = null;
  const grouped = mode === "refine" || mode === "ahead";
  const draw = (r: DecodeResult): { mask: Uint8Array; ms: number } => {
    const best = sortByIou(r.masks)[0];
    const t = performance.now();
    canvas.points = r.prompt.points;
    canvas.setCurrentMask(best.mask, [30, 144, 255]);
    lowRes = best.lowRes;
    mask = best.mask;
    return { mask: best.mask, ms: performance.now() - t };
  };

  let hoverSeq = 0;
  const fresh = (): boolean => !grouped || points.length >= 4;
  if (mode === "hover" || mode === "ahead") {
    el.addEventListener("mousemove", async (e) => {
      const p = canvas.eventToImage(e);
      const seq = ++hoverSeq;
      if (!fresh()) {
        const base = { points, box: null, mask, lowRes };
        await decoder.decodeAhead(base, p, w, () => seq === hoverSeq && base.points === points, state.progressive);
        return;
      }
      const r = await decoder.decodeLatest({ points: [{ x: p.x, y: p.y, label: 1 }], box: null }, null, true, state.progressive);
      if (!r) return;
      state.hovers++;
      draw(r);
      // progressive: the decoder's mask first, then refined while the pointer stays (as the annotator does)
      const best = sortByIou(r.masks)[0];
      if (!best.refined && await decoder.refineCandidate(best, () => seq === hoverSeq)) canvas.setCurrentMask(best.mask, [30, 144, 255]);
    });
  }
  el.addEventListener("contextmenu", (e) => e.preventDefault());
  el.addEventListener("mousedown", async (e) => {
    const t0 = e.timeStamp;
    const p = canvas.eventToImage(e);
    if (fresh()) { points = []; lowRes = null; mask = null; }
    const negative = points.length > 0 && (labels === "mask" ? insideMask(mask, w, p) : e.button === 2);
    points = [...points, { x: p.x, y: p.y, label: negative ? 0 : 1 }];
    const r = await decoder.decode({ points, box: null }, lowRes, points.length === 1, state.progressive);
    const drawn = draw(r);
    const first = performance.now() - t0;
    let refineMs = r.timings.refine;
    const best = sortByIou(r.masks)[0];
    if (!best.refined && state.progressive && await decoder.refineCandidate(best)) {
      canvas.setCurrentMask(best.mask, [30, 144, 255]);
      refineMs = decoder.lastRefineMs;
    }
    state.refinedLatencies.push(performance.now() - t0);
    state.latencies.push(first);
    state.decodeMs.push(r.timings.run);
    state.postMs.push(r.timings.post);
    state.refineMs.push(refineMs);
    state.drawMs.push(drawn.ms);
    state.reused.push(r.reused);
    state.maskPixels.push(drawn.mask.reduce((a, b) => a + b, 0));
  });
  state.ready = true;
  status.textContent = `ready: ${decoder.threads} thread(s), mode ${mode}, embedding ${embedding.byteLength} bytes`;
}

main().catch((err: Error) => {
  state.error = err.message;
  document.getElementById("status")!.textContent = `error: ${err.message}`;
});
