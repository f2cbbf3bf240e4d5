/**
 * The page side of the decoder: starts the Web Worker, matches replies to requests by id, and
 * offers `decodeLatest`, which drops stale hover requests so previews follow the decoder's speed.
 */
import type { DecodedMask, DecoderRequest, DecoderResponse, Prompt } from "./protocol";

type Pending = { resolve: (r: DecoderResponse) => void; reject: (e: Error) => void };
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

export interface DecodeResult { masks: DecodedMask[]; width: number; height: number; ms: number }

export class DecoderClient {
  private worker: Worker;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private busy = false;
  private queued: { args: [Prompt, Float32Array | null, boolean]; resolve: (r: DecodeResult | null) => void } | null = null;
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
    // Half the cores, at most 4: leaves the page's main thread (and other tabs) a core; measured
    // in benchmarks/bench_browser_decoder.py (on a busy 2-core machine 1 thread beat 2).
    const threads = canThread ? numThreads ?? Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 1) / 2))) : 1;
    const wasmPaths = new URL("/ort/", location.href).href;
    const r = await this.request({ type: "init", modelUrl, multimaskUrl, numThreads: threads, wasmPaths });
    if (r.type === "ready") {
      this.multimask = r.multimask;
      this.threads = r.threads;
    }
  }

  /** Hand an embedding (1×256×64×64) to the worker; `key` names it (image id + model version). */
  async setEmbedding(key: string, data: Float32Array, shape: number[], origSize: [number, number], inputSize: [number, number]): Promise<void> {
    const copy = data.slice();
    await this.request({ type: "setEmbedding", key, data: copy, shape, origSize, inputSize }, [copy.buffer]);
    this.embeddingKey = key;
  }

  /** Decode one prompt now. */
  async decode(prompt: Prompt, maskInput: Float32Array | null, multimask = false): Promise<DecodeResult> {
    const r = await this.request({
      type: "decode", key: this.embeddingKey, prompt, maskInput: maskInput ? maskInput.slice() : null,
      multimask: multimask && this.multimask,
    });
    if (r.type !== "decoded") throw new Error(`unexpected decoder reply ${r.type}`);
    return { masks: r.masks, width: r.width, height: r.height, ms: r.ms };
  }

  /** Decode, but when a newer call arrives while busy, the older waiting one resolves null (latest wins). */
  decodeLatest(prompt: Prompt, maskInput: Float32Array | null, multimask = false): Promise<DecodeResult | null> {
    return new Promise((resolve) => {
      if (this.queued) this.queued.resolve(null);
      this.queued = { args: [prompt, maskInput, multimask], resolve };
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.busy || !this.queued) return;
    const job = this.queued;
    this.queued = null;
    this.busy = true;
    try {
      job.resolve(await this.decode(...job.args));
    } catch {
      job.resolve(null);
    } finally {
      this.busy = false;
      void this.pump();
    }
  }

  terminate(): void { this.worker.terminate(); }
}
