import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { decoderThreads, DecoderClient, HOVER_REST_MS, samePrompt, sortByIou, speculativeLabels } from "../src/decoder/client";
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
    const masks = ious.map((iou, index) => ({ mask: new Uint8Array(4), lowRes: new Float32Array(256 * 256), iou, decodeId: id, index,
      refined: index === 0 }));
    this.onmessage?.({ data: { id, type: "decoded", masks, width: 2, height: 2, ms: runMs, timings: { run: runMs, post: 0, refine: 0 } } } as MessageEvent<DecoderResponse>);
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

/** Each test of the enclosing describe gets a FakeWorker for the Worker global. */
function useFakeWorker(): void {
  beforeEach(() => {
    vi.stubGlobal("Worker", FakeWorker);
    vi.stubGlobal("location", { href: "http://localhost/annotate/1" });
    vi.stubGlobal("self", { crossOriginIsolated: false });
  });
  afterEach(() => { vi.unstubAllGlobals(); });
}

/** A hover preview of `prompt` that the worker has answered. */
async function hoverDecoded(client: DecoderClient, worker: FakeWorker, prompt: Prompt): Promise<void> {
  const hover = client.decodeLatest(prompt, null, true);
  await tick();
  worker.answer(worker.decodes()[worker.decodes().length - 1].id);
  await hover;
}

describe("DecoderClient scheduling", () => {
  useFakeWorker();

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

  it("answers a follow-up click with a decode made ahead for either label, only with the same mask input", async () => {
    const { client, worker } = await readyClient();
    const lowRes = new Float32Array(256 * 256);
    const first = { x: 5, y: 5, label: 1 as const };
    const ahead = (label: 0 | 1): Prompt => ({ points: [first, { x: 30, y: 40, label }], box: null });
    for (const label of [0, 1] as const) {
      const r = client.decodeLatest(ahead(label), lowRes, false);
      await tick();
      worker.answer(worker.decodes()[worker.decodes().length - 1].id, [0.1 + label]);
      await r;
    }
    expect(worker.decodes()).toHaveLength(2);
    expect(worker.decodes()[0].maskInput).not.toBeNull();
    const neg = await client.decode({ points: [first, { x: 30.4, y: 39.7, label: 0 }], box: null }, lowRes, false);
    const pos = await client.decode({ points: [first, { x: 30, y: 40, label: 1 }], box: null }, lowRes, false);
    expect([neg.reused, neg.masks[0].iou, pos.reused, pos.masks[0].iou]).toEqual([true, 0.1, true, 1.1]);
    expect(worker.decodes()).toHaveLength(2); // neither click decoded again
    const other = client.decode({ points: [first, { x: 30, y: 40, label: 1 }], box: null }, lowRes.slice(), false);
    await tick();
    expect(worker.decodes()).toHaveLength(3); // another mask input (another state): decoded
    worker.answer(worker.decodes()[2].id);
    expect((await other).reused).toBe(false);
  });

  it("decodes ahead the likelier label first, then the other, and stops when the pointer or object changes", async () => {
    const { client, worker } = await readyClient();
    const mask = new Uint8Array([0, 1, 0, 0]); // 2×2: only (x 1, y 0) is inside
    const base = { points: [{ x: 0.5, y: 0.5, label: 1 as const }], box: null, mask, lowRes: new Float32Array(256 * 256) };
    const ahead = client.decodeAhead(base, { x: 1.2, y: 0.3 }, 2, () => true);
    await tick();
    expect(worker.decodes().map((d) => d.prompt.points[1].label)).toEqual([0]); // inside: negative first
    worker.answer(worker.decodes()[0].id);
    await tick();
    expect(worker.decodes().map((d) => d.prompt.points[1].label)).toEqual([0, 1]);
    worker.answer(worker.decodes()[1].id);
    await ahead;
    expect(worker.decodes()[1].maskInput).not.toBeNull();
    const click = await client.decode({ points: [...base.points, { x: 1.2, y: 0.3, label: 1 }], box: null }, base.lowRes, false);
    expect(click.reused).toBe(true);

    let still = true;
    const outside = client.decodeAhead(base, { x: 0.1, y: 1.6 }, 2, () => still);
    await tick();
    expect(worker.decodes()[2].prompt.points[1].label).toBe(1); // outside: positive first
    still = false; // the pointer moved on
    worker.answer(worker.decodes()[2].id);
    await outside;
    await tick();
    expect(worker.decodes()).toHaveLength(3);
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

describe("refining candidates on demand", () => {
  useFakeWorker();

  it("switches refinement in the worker and drops decodes made with the old setting", async () => {
    const { client, worker } = await readyClient();
    await hoverDecoded(client, worker, click(5, 5));
    const set = client.setRefine(false);
    const req = worker.requests[worker.requests.length - 1];
    expect(req).toMatchObject({ type: "setRefine", enabled: false });
    worker.onmessage?.({ data: { id: req.id, type: "refineSet", enabled: false } } as MessageEvent<DecoderResponse>);
    await set;
    // the hover's decode was refined: the click at the same place is decoded again, not reused
    const d = client.decode(click(5, 5), null, true);
    await tick();
    expect(worker.decodes()).toHaveLength(2);
    worker.answer(worker.decodes()[1].id);
    expect((await d).reused).toBe(false);
  });

  it("asks the worker for a candidate left unrefined and writes the refined mask into it", async () => {
    const { client, worker } = await readyClient();
    const d = client.decode(click(1, 1), null, true);
    await tick();
    worker.answer(worker.decodes()[0].id, [0.9, 0.4, 0.2]);
    const r = await d;
    const other = r.masks[1];
    expect(other.refined).toBe(false);
    const held = other.mask; // the annotator's states hold this array
    const pending = client.refineCandidate(other);
    const req = worker.requests[worker.requests.length - 1];
    expect(req).toMatchObject({ type: "refineCandidate", key: "img:1", decodeId: other.decodeId, index: 1 });
    worker.onmessage?.({ data: { id: req.id, type: "refinedMask", mask: Uint8Array.from([1, 0, 0, 1]), ms: 3 } } as MessageEvent<DecoderResponse>);
    expect(await pending).toBe(true);
    expect(Array.from(held)).toEqual([1, 0, 0, 1]);
    expect(other.refined).toBe(true);
    // refined already: no second request
    const count = worker.requests.length;
    expect(await client.refineCandidate(other)).toBe(true);
    expect(worker.requests.length).toBe(count);
  });

  it("keeps the mask as it was when the worker no longer holds the decode", async () => {
    const { client, worker } = await readyClient();
    const d = client.decode(click(1, 1), null, true);
    await tick();
    worker.answer(worker.decodes()[0].id, [0.9, 0.4]);
    const other = (await d).masks[1];
    const pending = client.refineCandidate(other);
    const req = worker.requests[worker.requests.length - 1];
    worker.onmessage?.({ data: { id: req.id, type: "error", message: "decode 3 is no longer held" } } as MessageEvent<DecoderResponse>);
    expect(await pending).toBe(false);
    expect(Array.from(other.mask)).toEqual([0, 0, 0, 0]);
    expect(other.refined).toBe(false);
  });
});

describe("candidates", () => {
  it("orders the decoder's candidates by predicted IoU, best first", () => {
    const m = (iou: number) => ({ mask: new Uint8Array(1), lowRes: new Float32Array(1), iou, decodeId: 1, index: 0, refined: true });
    expect(sortByIou([m(0.3), m(0.9), m(0.6)]).map((c) => c.iou)).toEqual([0.9, 0.6, 0.3]);
  });

  it("treats a prompt as the same click only with the same earlier points, box and label, the new point within the tolerance", () => {
    expect(samePrompt(click(5, 5), click(5.5, 4.6))).toBe(true);
    expect(samePrompt(click(5, 5), click(6, 5))).toBe(false);
    expect(samePrompt(click(5, 5), click(5, 5, 0))).toBe(false);
    expect(samePrompt(click(5, 5), { points: [{ x: 5, y: 5, label: 1 }], box: { x0: 0, y0: 0, x1: 9, y1: 9 } })).toBe(false);
    expect(samePrompt(click(5, 5), { points: [{ x: 5, y: 5, label: 1 }, { x: 9, y: 9, label: 1 }], box: null })).toBe(false);
    const box = { x0: 0, y0: 0, x1: 9, y1: 9 };
    const two = (x: number, label: 0 | 1, b = box): Prompt => ({ points: [{ x: 1, y: 1, label: 1 }, { x, y: 3, label }], box: b });
    expect(samePrompt(two(4, 0), two(4.5, 0))).toBe(true);
    expect(samePrompt(two(4, 0), two(4, 1))).toBe(false);
    expect(samePrompt(two(4, 0), two(4, 0, { ...box, x1: 8 }))).toBe(false);
    expect(samePrompt(two(4, 0), { ...two(4, 0), points: [{ x: 1.2, y: 1, label: 1 }, { x: 4, y: 3, label: 0 }] })).toBe(false);
    expect(samePrompt({ points: [], box }, { points: [], box: { ...box, x1: 9.5 } })).toBe(true); // a dragged box
    expect(samePrompt({ points: [], box }, { points: [], box: { ...box, y0: 1 } })).toBe(false);
    expect(samePrompt({ points: [], box: null }, { points: [], box: null })).toBe(false);
  });

  it("decodes a negative first inside the mask and a positive first outside it", () => {
    expect(speculativeLabels(true)).toEqual([0, 1]);
    expect(speculativeLabels(false)).toEqual([1, 0]);
  });
});

describe("decoder threads", () => {
  it("uses every core up to two, then half of them, between 2 and 4", () => {
    expect([0, 1, 2, 3, 4, 6, 8, 16, 64].map(decoderThreads)).toEqual([1, 1, 2, 2, 2, 3, 4, 4, 4]);
  });
});

describe("DecoderClient refinement of a drawn mask", () => {
  useFakeWorker();

  const refineRequests = (w: FakeWorker) => w.requests.filter((r) => r.type === "refineCandidate");
  const answerRefined = (w: FakeWorker, id: number, value = 1) =>
    w.onmessage?.({ data: { id, type: "refinedMask", mask: new Uint8Array(4).fill(value), ms: 7 } } as MessageEvent<DecoderResponse>);

  async function unrefinedClick(client: DecoderClient, worker: FakeWorker, x: number) {
    const pending = client.decode(click(x, x), null, false, true);
    await tick();
    const req = worker.decodes()[worker.decodes().length - 1];
    expect(req.deferRefine).toBe(true);
    worker.onmessage?.({ data: { id: req.id, type: "decoded", masks: [{ mask: new Uint8Array(4), lowRes: new Float32Array(4), iou: 0.5,
      decodeId: req.id, index: 0, refined: false }], width: 2, height: 2, ms: 1, timings: { run: 1, post: 0, refine: 0 } } } as MessageEvent<DecoderResponse>);
    return (await pending).masks[0];
  }

  it("refines in place once, however often it is asked, and says how long it took", async () => {
    const { client, worker } = await readyClient();
    const m = await unrefinedClick(client, worker, 1);
    const a = client.refineCandidate(m);
    const b = client.refineCandidate(m);
    await tick();
    expect(refineRequests(worker)).toHaveLength(1);
    answerRefined(worker, refineRequests(worker)[0].id);
    expect([await a, await b]).toEqual([true, true]);
    expect(Array.from(m.mask)).toEqual([1, 1, 1, 1]);
    expect(m.refined).toBe(true);
    expect(client.lastRefineMs).toBe(7);
    expect(await client.refineCandidate(m)).toBe(true); // already refined: nothing asked
    expect(refineRequests(worker)).toHaveLength(1);
  });

  it("lets a waiting click go first and drops a refinement the page no longer wants", async () => {
    const { client, worker } = await readyClient();
    const first = await unrefinedClick(client, worker, 1);
    // a hover decode runs; meanwhile the refinement and a second click wait
    const hover = client.decodeLatest(click(5, 5), null, true);
    await tick();
    let current = first;
    const refined = client.refineCandidate(first, () => current === first);
    const second = client.decode(click(2, 2), null, false, true);
    await tick();
    worker.answer(worker.decodes()[worker.decodes().length - 1].id); // the hover
    await hover;
    await tick();
    // the click went before the refinement
    expect(worker.decodes()[worker.decodes().length - 1].prompt.points[0].x).toBe(2);
    expect(refineRequests(worker)).toHaveLength(0);
    current = null as unknown as typeof first; // the editor moved on to the second click's mask
    worker.answer(worker.decodes()[worker.decodes().length - 1].id);
    await second;
    expect(await refined).toBe(false); // dropped, never sent
    expect(refineRequests(worker)).toHaveLength(0);
    expect(first.refined).toBe(false);
    // asked again by someone who wants it (an accept), it is refined after all
    const again = client.refineCandidate(first);
    await tick();
    expect(refineRequests(worker)).toHaveLength(1);
    answerRefined(worker, refineRequests(worker)[0].id);
    expect(await again).toBe(true);
  });
});

describe("DecoderClient decodes ahead before their refinement", () => {
  useFakeWorker();

  it("decodes the likelier label, refines it, then the other, each asked with deferRefine", async () => {
    const { client, worker } = await readyClient();
    const base = { points: [{ x: 1, y: 1, label: 1 as const }], box: null, mask: new Uint8Array([1, 0, 0, 0]), lowRes: null };
    const made = client.decodeAhead(base, { x: 1.5, y: 0.5 }, 2, () => true, true); // outside the mask: positive first
    const order: string[] = [];
    for (let step = 0; step < 4; step++) {
      await tick();
      const last = worker.requests[worker.requests.length - 1];
      if (last.type === "decode") {
        order.push(`decode ${last.prompt.points[1].label}`);
        expect(last.deferRefine).toBe(true);
        worker.onmessage?.({ data: { id: last.id, type: "decoded", masks: [{ mask: new Uint8Array(4), lowRes: new Float32Array(4), iou: 0.5,
          decodeId: last.id, index: 0, refined: false }], width: 2, height: 2, ms: 1, timings: { run: 1, post: 0, refine: 0 } } } as MessageEvent<DecoderResponse>);
      } else if (last.type === "refineCandidate") {
        order.push("refine");
        worker.onmessage?.({ data: { id: last.id, type: "refinedMask", mask: new Uint8Array(4), ms: 3 } } as MessageEvent<DecoderResponse>);
      }
    }
    expect(await made).toBe(2);
    expect(order).toEqual(["decode 1", "refine", "decode 0", "refine"]);
  });

  it("a hover preview asked with deferRefine says so to the worker; without it, it does not", async () => {
    const { client, worker } = await readyClient();
    void client.decodeLatest(click(1, 1), null, true, true);
    await tick();
    expect(worker.decodes()[0].deferRefine).toBe(true);
    worker.answer(worker.decodes()[0].id);
    void client.decodeLatest(click(2, 2), null, true);
    await tick();
    expect(worker.decodes()[1].deferRefine).toBeUndefined();
  });
});
