/**
 * Decoder latency benchmark page (driven by benchmarks/bench_browser_decoder.py): loads a decoder
 * ONNX and a wire-format embedding given in the query string, then, for every mousedown on the
 * canvas, measures the time from the click event to the mask drawn on the canvas.
 */
import { AnnotationCanvas } from "../canvas/canvas";
import { DecoderClient } from "../decoder/client";
import { parseEmbedding } from "../embedding";

interface BenchState { ready: boolean; error: string | null; latencies: number[]; decodeMs: number[]; threads: number; embeddingBytes: number; isolated: boolean; maskPixels: number[] }
const state: BenchState = { ready: false, error: null, latencies: [], decodeMs: [], threads: 0, embeddingBytes: 0, isolated: self.crossOriginIsolated, maskPixels: [] };
(window as unknown as { bench: BenchState }).bench = state;

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const model = q.get("model");
  const emb = q.get("embedding");
  if (!model || !emb) throw new Error("bench.html needs ?model=<decoder.onnx>&embedding=<blob>");
  const threads = Number(q.get("threads") ?? "1");
  const status = document.getElementById("status")!;
  const el = document.getElementById("stage") as HTMLCanvasElement;

  const res = await fetch(emb);
  if (!res.ok) throw new Error(`embedding ${emb}: HTTP ${res.status}`);
  const embedding = parseEmbedding(await res.arrayBuffer());
  state.embeddingBytes = embedding.byteLength;
  const [h, w] = embedding.header.orig_size;

  const decoder = new DecoderClient();
  await decoder.init(model, null, threads);
  state.threads = decoder.threads;
  await decoder.setEmbedding("bench", embedding.data, embedding.header.shape, embedding.header.orig_size, embedding.header.input_size);

  const canvas = new AnnotationCanvas(el);
  const img = new OffscreenCanvas(w, h);
  const ictx = img.getContext("2d")!;
  const grad = ictx.createLinearGradient(0, 0, w, h);
  grad.addColorStop(0, "#345");
  grad.addColorStop(1, "#9ab");
  ictx.fillStyle = grad;
  ictx.fillRect(0, 0, w, h);
  canvas.setImage(img, w, h);

  // warm-up so the first measured click does not pay for WASM compilation
  await decoder.decode({ points: [{ x: w / 2, y: h / 2, label: 1 }], box: null }, null);

  el.addEventListener("mousedown", async (e) => {
    const t0 = e.timeStamp;
    const p = canvas.eventToImage(e);
    const out = await decoder.decode({ points: [{ x: p.x, y: p.y, label: 1 }], box: null }, null);
    canvas.points = [{ x: p.x, y: p.y, label: 1 }];
    canvas.setCurrentMask(out.masks[0].mask, [30, 144, 255]);
    state.latencies.push(performance.now() - t0);
    state.decodeMs.push(out.ms);
    state.maskPixels.push(out.masks[0].mask.reduce((a, b) => a + b, 0));
  });
  state.ready = true;
  status.textContent = `ready: ${decoder.threads} thread(s), embedding ${embedding.byteLength} bytes`;
}

main().catch((err: Error) => {
  state.error = err.message;
  document.getElementById("status")!.textContent = `error: ${err.message}`;
});
