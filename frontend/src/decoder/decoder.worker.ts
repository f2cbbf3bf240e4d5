/**
 * The decoder Web Worker: holds the onnxruntime-web sessions (single- and optionally multi-mask
 * decoder) and the current embedding, and answers id-matched decode requests off the main thread.
 * Tensors that do not change between clicks (the embedding, `orig_im_size`, the empty
 * `mask_input` of a first click) are built once per image, not per decode.
 */
/// <reference lib="webworker" />
import * as ort from "onnxruntime-web/wasm";
import { buildFeeds, LOW_RES } from "./feeds";
import { logitsToMask, maskWorkSize, upsampleMask } from "./masks";
import type { DecodedMask, DecoderRequest, DecoderResponse, PromptPoint } from "./protocol";
import { type GrabCutPass, openGrabCutPass } from "./grabcut";
import { GuidedRefiner } from "./refine";

interface Loaded {
  key: string;
  origSize: [number, number];
  inputSize: [number, number];
  /** [height, width] at which masks are decoded and refined (`maskWorkSize`), then scaled to origSize */
  work: [number, number];
  tensors: { image_embeddings: ort.Tensor; orig_im_size: ort.Tensor };
  /** edge-aware refinement with the image, when the page sent it (and its GrabCut pass, if any) */
  refiner: GuidedRefiner | null;
  grabcut: GrabCutPass | null;
}

let single: ort.InferenceSession | null = null;
let multi: ort.InferenceSession | null = null;
let embedding: Loaded | null = null;
/** the page's switch: refine masks with the image (when it sent the image) or not; kept across images */
let refineOn = true;
/** logits of recent decodes whose unrefined masks may still be refined on demand */
const held: { decodeId: number; key: string; logits: Float32Array; points: PromptPoint[] }[] = [];
const HELD = 4;
const noMask = {
  mask_input: new ort.Tensor("float32", new Float32Array(LOW_RES * LOW_RES), [1, 1, LOW_RES, LOW_RES]),
  has_mask_input: new ort.Tensor("float32", new Float32Array([0]), [1]),
};
const hasMask = new ort.Tensor("float32", new Float32Array([1]), [1]);

/** Prompt points (image pixels) in the work size's pixels, where the refiner holds its clicks. */
function toWork(points: PromptPoint[], e: Loaded): PromptPoint[] {
  const [wh, ww] = e.work, [oh, ow] = e.origSize;
  if (wh === oh && ww === ow) return points;
  return points.map((p) => ({ ...p, x: (p.x * ww) / ow, y: (p.y * wh) / oh }));
}

function reply(msg: DecoderResponse, transfer: Transferable[] = []): void {
  (self as unknown as DedicatedWorkerGlobalScope).postMessage(msg, transfer);
}

async function createSession(url: string): Promise<ort.InferenceSession> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not download the decoder ${url} (HTTP ${res.status})`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
}

async function decode(req: Extract<DecoderRequest, { type: "decode" }>): Promise<DecoderResponse> {
  if (!embedding || embedding.key !== req.key) throw new Error(`embedding ${req.key} is not loaded in the decoder`);
  const session = req.multimask && multi ? multi : single;
  if (!session) throw new Error("the decoder is not initialised");
  const t0 = performance.now();
  const f = buildFeeds(req.prompt, embedding.origSize, embedding.inputSize, req.maskInput);
  const feeds: Record<string, ort.Tensor> = {
    ...embedding.tensors,
    point_coords: new ort.Tensor("float32", f.point_coords.data, f.point_coords.dims),
    point_labels: new ort.Tensor("float32", f.point_labels.data, f.point_labels.dims),
    ...(req.maskInput
      ? { mask_input: new ort.Tensor("float32", f.mask_input.data, f.mask_input.dims), has_mask_input: hasMask }
      : noMask),
  };
  const out = await session.run(feeds);
  const t1 = performance.now();
  const masks = out["masks"];
  const low = out["low_res_masks"];
  const iou = out["iou_predictions"];
  if (!masks || !low || !iou) {
    throw new Error(`decoder outputs must be masks, iou_predictions, low_res_masks; got ${Object.keys(out).join(", ")}`);
  }
  const [, count, height, width] = masks.dims as number[];
  const logits = masks.data as Float32Array;
  const lowData = low.data as Float32Array;
  const ious = iou.data as Float32Array;
  const result: DecodedMask[] = [];
  const n = LOW_RES * LOW_RES;
  const refiner = refineOn && embedding.refiner && embedding.refiner.width === width && embedding.refiner.height === height
    ? embedding.refiner : null;
  let refineMs = 0;
  // With refinement, `choose` refines what is shown first: every candidate when they are ranked by
  // their predicted IoU after refinement (then `iou` is that), else the one of the highest decoder
  // IoU, the others keeping the plain threshold until the page asks (Tab), from the logits held here.
  // A deferred decode refines nothing here: the page draws the decoder's mask, then asks for it refined.
  const defer = refiner !== null && req.deferRefine === true && (count === 1 || refiner.selectWeights === null);
  const tr = performance.now();
  const workPoints = toWork(req.prompt.points, embedding);
  const chosen = refiner && !defer ? refiner.choose(logits, count, ious, workPoints) : null;
  refineMs = chosen ? performance.now() - tr : 0;
  const [oh, ow] = embedding.origSize;
  for (let k = 0; k < count; k++) {
    const mask = upsampleMask(chosen?.masks[k] ?? logitsToMask(logits, height, width, k), height, width, oh, ow);
    result.push({ mask, lowRes: lowData.slice(k * n, (k + 1) * n), iou: chosen ? chosen.ious[k] : ious[k],
      decodeId: req.id, index: k, refined: refiner === null || chosen?.masks[k] != null });
  }
  const hold = refiner !== null && result.some((m) => !m.refined);
  if (hold) {
    held.push({ decodeId: req.id, key: req.key, logits, points: workPoints });
    if (held.length > HELD) held.shift();
  }
  // the held logits stay with their tensor: it is left to the garbage collector, not disposed
  for (const t of Object.values(out)) if (!(hold && t === masks)) t.dispose();
  const t2 = performance.now();
  return { id: req.id, type: "decoded", masks: result, width: ow, height: oh, ms: t2 - t0, timings: { run: t1 - t0, post: t2 - t1, refine: refineMs } };
}

self.onmessage = async (event: MessageEvent<DecoderRequest>) => {
  const req = event.data;
  try {
    if (req.type === "init") {
      ort.env.wasm.wasmPaths = req.wasmPaths;
      ort.env.wasm.numThreads = req.numThreads;
      single = await createSession(req.modelUrl);
      multi = null;
      if (req.multimaskUrl) {
        try { multi = await createSession(req.multimaskUrl); } catch { multi = null; }
      }
      reply({ id: req.id, type: "ready", multimask: multi !== null, threads: ort.env.wasm.numThreads ?? 1 });
    } else if (req.type === "refineCandidate") {
      const h = held.find((x) => x.decodeId === req.decodeId && x.key === req.key);
      const refiner = refineOn && embedding?.key === req.key ? embedding.refiner : null;
      if (!h || !refiner) throw new Error(`decode ${req.decodeId} is no longer held for refinement`);
      const t0 = performance.now();
      const [wh, ww] = embedding!.work;
      const [oh, ow] = embedding!.origSize;
      const mask = upsampleMask(refiner.refine(h.logits, req.index, h.points), wh, ww, oh, ow);
      reply({ id: req.id, type: "refinedMask", mask, ms: performance.now() - t0 }, [mask.buffer]);
    } else if (req.type === "setRefine") {
      refineOn = req.enabled;
      held.length = 0; // held logits were kept for refining: with refinement off nothing asks for them
      reply({ id: req.id, type: "refineSet", enabled: refineOn });
    } else if (req.type === "setEmbedding") {
      held.length = 0;
      const guided = req.guide && req.guide.params.method === "guided" ? req.guide : null;
      // masks are decoded and refined at the work size; the page sends the image's pixels at that size
      const work = maskWorkSize(req.origSize[0], req.origSize[1]);
      const [h, w] = work;
      if (guided && guided.rgba.length !== w * h * 4) {
        throw new Error(`the image's pixels for refinement must be ${w}×${h} (the mask work size), got ${guided.rgba.length / 4} pixels`);
      }
      const grabcut = guided ? await openGrabCutPass(guided.rgba, w, h, guided.params) : null;
      // the image this replaces (another setEmbedding may have replaced it while OpenCV.js loaded)
      const previous = embedding;
      embedding = {
        key: req.key, origSize: req.origSize, inputSize: req.inputSize, work,
        tensors: {
          image_embeddings: new ort.Tensor("float32", req.data, req.shape),
          // the decoder's masks come at the work size (its crop of the 1024 frame is the same)
          orig_im_size: new ort.Tensor("float32", new Float32Array(work), [2]),
        },
        refiner: guided
          ? new GuidedRefiner(guided.rgba, w, h, grabcut ? guided.params : { ...guided.params, grabcut: 0 }, grabcut)
          : null,
        grabcut,
      };
      previous?.grabcut?.dispose();
      reply({ id: req.id, type: "embeddingSet" });
    } else {
      const res = await decode(req);
      const transfer = res.type === "decoded" ? res.masks.flatMap((m) => [m.mask.buffer, m.lowRes.buffer]) : [];
      reply(res, transfer as Transferable[]);
    }
  } catch (err) {
    reply({ id: req.id, type: "error", message: (err as Error).message ?? String(err) });
  }
};
