/**
 * Image embeddings: parse the "MLEMBED1" wire format (see backend/services/embedding_format.py)
 * into a Float32Array, and fetch it from the API, waiting politely while the worker computes it.
 */
import type { ApiClient } from "./api/client";

const MAGIC = "MLEMBED1";

export interface EmbeddingHeader {
  dtype: "float32" | "float16" | "int8";
  shape: number[];
  model_version: string;
  orig_size: [number, number];
  input_size: [number, number];
  scales?: number[];
}

export interface Embedding {
  header: EmbeddingHeader;
  /** 1×256×64×64 float32, C-order. */
  data: Float32Array;
  /** Bytes on the wire. */
  byteLength: number;
}

/** IEEE half → float, for the browsers without Float16Array. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let halfTable: Float32Array | null = null;
function getHalfTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

/** Parse an embedding blob; throws an Error naming the problem when it is malformed. */
export function parseEmbedding(buffer: ArrayBuffer): Embedding {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 12 || String.fromCharCode(...bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error("not a Maskloop embedding (bad magic)");
  }
  const view = new DataView(buffer);
  const headerLength = view.getUint32(8, true);
  if (12 + headerLength > bytes.length) throw new Error("truncated embedding header");
  let header: EmbeddingHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength))) as EmbeddingHeader;
  } catch (err) {
    throw new Error(`bad embedding header: ${(err as Error).message}`);
  }
  if (!Array.isArray(header.shape) || !Array.isArray(header.orig_size) || !Array.isArray(header.input_size)) {
    throw new Error("bad embedding header: shape, orig_size and input_size are required");
  }
  const offset = 12 + headerLength;
  const count = header.shape.reduce((a, b) => a * b, 1);
  const itemSize = { float32: 4, float16: 2, int8: 1 }[header.dtype];
  if (!itemSize) throw new Error(`unknown embedding dtype ${JSON.stringify(header.dtype)}`);
  if (bytes.length - offset !== count * itemSize) {
    throw new Error(`embedding data has ${bytes.length - offset} bytes, expected ${count * itemSize}`);
  }
  const data = new Float32Array(count);
  if (header.dtype === "float32") {
    data.set(new Float32Array(buffer.slice(offset)));
  } else if (header.dtype === "float16") {
    const table = getHalfTable();
    const halves = new Uint16Array(buffer, offset, count); // offset is 16-aligned by the format
    for (let i = 0; i < count; i++) data[i] = table[halves[i]];
  } else {
    const channels = header.shape[1];
    if (!header.scales || header.scales.length !== channels) {
      throw new Error("int8 embedding without one scale per channel");
    }
    const q = new Int8Array(buffer, offset, count);
    const perChannel = count / channels;
    for (let c = 0; c < channels; c++) {
      const s = header.scales[c];
      const base = c * perChannel;
      for (let i = 0; i < perChannel; i++) data[base + i] = q[base + i] * s;
    }
  }
  return { header, data, byteLength: bytes.length };
}

export type EmbeddingProgress =
  | { state: "requesting" }
  | { state: "computing"; retryAfterSeconds: number; waitedSeconds: number }
  | { state: "downloading" }
  | { state: "ready"; bytes: number };

export interface FetchEmbeddingOptions {
  dtype?: "float16" | "int8";
  onProgress?: (p: EmbeddingProgress) => void;
  /** Give up after this long waiting for the worker (seconds). */
  timeoutSeconds?: number;
  signal?: AbortSignal;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(new DOMException("aborted", "AbortError")); return; }
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); reject(new DOMException("aborted", "AbortError")); }, { once: true });
  });
}

/** GET /images/{id}/embedding, retrying on 202 after Retry-After seconds. */
export async function fetchEmbedding(api: ApiClient, imageId: number, opts: FetchEmbeddingOptions = {}): Promise<Embedding> {
  const dtype = opts.dtype ?? "float16";
  const deadline = Date.now() + (opts.timeoutSeconds ?? 300) * 1000;
  const started = Date.now();
  opts.onProgress?.({ state: "requesting" });
  for (;;) {
    const res = await api.raw(`/images/${imageId}/embedding?dtype=${dtype}`, { signal: opts.signal });
    if (res.status === 202) {
      const retry = Math.max(0.2, Number(res.headers.get("Retry-After") ?? "1") || 1);
      if (Date.now() + retry * 1000 > deadline) {
        throw new Error(`the embedding of image ${imageId} is still being computed after ${Math.round((Date.now() - started) / 1000)} s; check that a worker is running, then retry`);
      }
      opts.onProgress?.({ state: "computing", retryAfterSeconds: retry, waitedSeconds: (Date.now() - started) / 1000 });
      await sleep(retry * 1000, opts.signal);
      continue;
    }
    opts.onProgress?.({ state: "downloading" });
    const buffer = await res.arrayBuffer();
    const emb = parseEmbedding(buffer);
    opts.onProgress?.({ state: "ready", bytes: emb.byteLength });
    return emb;
  }
}
