import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { decoderThreads, DecoderClient, HOVER_REST_MS, samePoint, sortByIou } from "../src/decoder/client";
import type { DecoderRequest, DecoderResponse, Prompt } from "../src/decoder/protocol";

/** A stand-in for the decoder Web Worker: records requests; the test answers them one by one. */
class FakeWorker {
  static last: FakeWorker;
  requests: DecoderRequest[] = [];
  onmessage: ((e: MessageEvent<DecoderResponse>) => void) | null = null;
  onerror: ((e: ErrorEvent) => void) | null = null;
  constructor() { FakeWorker.last = this; }
  postMessage(msg: DecoderRequest): void { this.requests.push(msg); }
  terminate(): void {}
  decodes(): Extract<DecoderRequest, { type: "decode" }>[] {
    return this.requests.filter((r): r is Extract<DecoderRequest, { type: "decode" }> => r.type === "decode");
  }
  /** answer the request `id` as the worker would, with K masks whose ious are given */
  answer(id: number, ious = [0.5], runMs = 1): void {
    const masks = ious.map((iou) => ({ mask: new Uint8Array(4), lowRes: new Float32Array(256 * 256), iou }));
    this.onmessage?.({ data: { id, type: "decoded", masks, width: 2, height: 2, ms: runMs, timings: { run: runMs, post: 0 } } } as MessageEvent<DecoderResponse>);
  }
  answerPlain(id: number, type: "ready" | "embeddingSet"): void {
    const data = type === "ready" ? { id, type, multimask: true, threads: 1 } : { id, type };
    this.onmessage?.({ data } as MessageEvent<DecoderResponse>);
  }
}

const click = (x: number, y: number, label: 0 | 1 = 1): Prompt => ({ points: [{ x, y, label }], box: null });
const tick = () => new Promise((r) => setTimeout(r, 0));

async function readyClient(): Promise<{ client: DecoderClient; worker: FakeWorker }> {
  const client = new DecoderClient();
  const worker = FakeWorker.last;
  const init = client.init("/d.onnx", "/dm.onnx");
  worker.answerPlain(worker.requests[0].id, "ready");
  await init;
  const set = client.setEmbedding("img:1", new Float32Array(4), [1, 1, 2, 2], [2, 2], [2, 2]);
  worker.answerPlain(worker.requests[1].id, "embeddingSet");
  await set;
  return { client, worker };
}

/** A hover preview of `prompt` that the worker has answered. */
async function hoverDecoded(client: DecoderClient, worker: FakeWorker, prompt: Prompt): Promise<void> {
  const hover = client.decodeLatest(prompt, null, true);
  await tick();
  worker.answer(worker.decodes()[worker.decodes().length - 1].id);
  await hover;
}

describe("DecoderClient scheduling", () => {
  beforeEach(() => {
    vi.stubGlobal("Worker", FakeWorker);
    vi.stubGlobal("location", { href: "http://localhost/annotate/1" });
    vi.stubGlobal("self", { crossOriginIsolated: false });
  });
  afterEach(() => { vi.unstubAllGlobals(); });

  it("runs one decode at a time and lets a newer hover replace one that has not started", async () => {
    const { client, worker } = await readyClient();
    const h1 = client.decodeLatest(click(1, 1), null, true);
    const h2 = client.decodeLatest(click(2, 2), null, true);
    const h3 = client.decodeLatest(click(3, 3), null, true);
    await tick();
    expect(worker.decodes()).toHaveLength(1); // h1 runs; h2 waits, then h3 replaces it
    expect(await h2).toBeNull();
    worker.answer(worker.decodes()[0].id);
    expect((await h1)?.prompt.points[0].x).toBe(1);
    await tick();
    expect(worker.decodes()).toHaveLength(2);
    expect(worker.decodes()[1].prompt.points[0].x).toBe(3);
    worker.answer(worker.decodes()[1].id);
    expect((await h3)?.reused).toBe(false);
  });

  it("puts a click ahead of a waiting hover, which it drops", async () => {
    const { client, worker } = await readyClient();
    void client.decodeLatest(click(1, 1), null, true); // running
    const waiting = client.decodeLatest(click(2, 2), null, true);
    const c = client.decode(click(50, 50, 0), null, false);
    expect(await waiting).toBeNull();
    worker.answer(worker.decodes()[0].id);
    await tick();
    expect(worker.decodes()).toHaveLength(2);
    expect(worker.decodes()[1].prompt.points[0]).toEqual({ x: 50, y: 50, label: 0 });
    worker.answer(worker.decodes()[1].id);
    expect((await c).reused).toBe(false);
  });

  it("answers a first click on the hovered point with the hover's decode, even while it runs", async () => {
    const { client, worker } = await readyClient();
    const hover = client.decodeLatest(click(10.2, 20.4), null, true);
    await tick();
    const c = client.decode(click(10.5, 20), null, true);
    await tick();
    expect(worker.decodes()).toHaveLength(1); // no second decode
    worker.answer(worker.decodes()[0].id, [0.2, 0.9, 0.4]);
    const r = await c;
    expect(r.reused).toBe(true);
    expect(r.prompt.points[0]).toEqual({ x: 10.2, y: 20.4, label: 1 }); // the point actually decoded
    expect(r.masks.map((m) => m.iou)).toEqual([0.2, 0.9, 0.4]);
    expect((await hover)?.reused).toBe(false);
  });

  it("decodes again when the click is elsewhere, carries a mask input, or asks for the other decoder", async () => {
    const { client, worker } = await readyClient();
    await hoverDecoded(client, worker, click(10, 10));
    const far = client.decode(click(14, 10), null, true);
    await tick();
    expect(worker.decodes()).toHaveLength(2);
    worker.answer(worker.decodes()[1].id);
    expect((await far).reused).toBe(false);
    const withMask = client.decode(click(10, 10), new Float32Array(256 * 256), true);
    await tick();
    expect(worker.decodes()).toHaveLength(3);
    expect(worker.decodes()[2].maskInput).not.toBeNull();
    worker.answer(worker.decodes()[2].id);
    await withMask;
    const single = client.decode(click(10, 10), null, false);
    await tick();
    expect(worker.decodes()).toHaveLength(4);
    expect(worker.decodes()[3].multimask).toBe(false);
    worker.answer(worker.decodes()[3].id);
    await single;
  });

  it("with slow decodes, decodes a hover only where the pointer rests, and never delays a click for it", async () => {
    const { client, worker } = await readyClient();
    const first = client.decode(click(1, 1), null, true);
    await tick();
    worker.answer(worker.decodes()[0].id, [0.5], 300); // the decoder is slow on this machine
    await first;
    vi.useFakeTimers();
    try {
      const passing = client.decodeLatest(click(2, 2), null, true); // the pointer passes through…
      vi.advanceTimersByTime(HOVER_REST_MS / 2);
      const resting = client.decodeLatest(click(3, 3), null, true); // …and rests here
      vi.advanceTimersByTime(HOVER_REST_MS - 1);
      expect(worker.decodes()).toHaveLength(1);
      expect(await passing).toBeNull();
      vi.advanceTimersByTime(1);
      expect(worker.decodes()).toHaveLength(2);
      expect(worker.decodes()[1].prompt.points[0].x).toBe(3);
      worker.answer(worker.decodes()[1].id, [0.5], 300);
      expect((await resting)?.prompt.points[0].x).toBe(3);

      const early = client.decodeLatest(click(9, 9), null, true);
      const c = client.decode(click(9, 9), null, true); // clicked before the rest: decoded at once
      expect(await early).toBeNull();
      await Promise.resolve();
      expect(worker.decodes()).toHaveLength(3);
      vi.advanceTimersByTime(10 * HOVER_REST_MS);
      expect(worker.decodes()).toHaveLength(3); // the dropped hover never runs
      worker.answer(worker.decodes()[2].id, [0.5], 300);
      expect((await c).reused).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("forgets hover decodes when the embedding changes", async () => {
    const { client, worker } = await readyClient();
    await hoverDecoded(client, worker, click(10, 10));
    const set = client.setEmbedding("img:2", new Float32Array(4), [1, 1, 2, 2], [2, 2], [2, 2]);
    worker.answerPlain(worker.requests[worker.requests.length - 1].id, "embeddingSet");
    await set;
    const c = client.decode(click(10, 10), null, true);
    await tick();
    expect(worker.decodes()).toHaveLength(2);
    expect(worker.decodes()[1].key).toBe("img:2");
    worker.answer(worker.decodes()[1].id);
    expect((await c).reused).toBe(false);
  });
});

describe("candidates", () => {
  it("orders the decoder's candidates by predicted IoU, best first", () => {
    const m = (iou: number) => ({ mask: new Uint8Array(1), lowRes: new Float32Array(1), iou });
    expect(sortByIou([m(0.3), m(0.9), m(0.6)]).map((c) => c.iou)).toEqual([0.9, 0.6, 0.3]);
  });

  it("treats only a lone positive point within the tolerance as the same click", () => {
    expect(samePoint(click(5, 5), click(5.5, 4.6))).toBe(true);
    expect(samePoint(click(5, 5), click(6, 5))).toBe(false);
    expect(samePoint(click(5, 5), click(5, 5, 0))).toBe(false);
    expect(samePoint(click(5, 5), { points: [{ x: 5, y: 5, label: 1 }], box: { x0: 0, y0: 0, x1: 9, y1: 9 } })).toBe(false);
    expect(samePoint(click(5, 5), { points: [{ x: 5, y: 5, label: 1 }, { x: 9, y: 9, label: 1 }], box: null })).toBe(false);
  });
});

describe("decoder threads", () => {
  it("uses every core up to two, then half of them, between 2 and 4", () => {
    expect([0, 1, 2, 3, 4, 6, 8, 16, 64].map(decoderThreads)).toEqual([1, 1, 2, 2, 2, 3, 4, 4, 4]);
  });
});
