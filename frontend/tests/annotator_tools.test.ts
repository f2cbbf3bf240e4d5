import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiClient } from "../src/api/client";
import type { ImageInfo } from "../src/api/types";
import { EditHistory, emptyState, paintDisk, paintStroke, withCandidate } from "../src/annotator/history";
import { isProposal, nextProposal, type ListedObject } from "../src/annotator/objects";
import { predictNextImage, Prefetcher } from "../src/annotator/prefetch";
import { fillMaskPixels } from "../src/decoder/masks";

const cand = (iou: number, fill: number) => ({ mask: new Uint8Array(4).fill(fill), lowRes: new Float32Array(2).fill(iou), iou, decodeId: 1, index: 0, refined: true });

describe("candidate cycling", () => {
  it("shows the chosen candidate and wraps around both ways", () => {
    const s0 = withCandidate({ ...emptyState(), points: [{ x: 1, y: 1, label: 1 }], candidates: [cand(0.9, 1), cand(0.7, 0), cand(0.5, 1)] }, 0);
    expect(s0.iou).toBe(0.9);
    const s1 = withCandidate(s0, s0.candidate + 1);
    expect([s1.candidate, s1.iou, s1.mask?.[0]]).toEqual([1, 0.7, 0]);
    expect(s1.lowRes).toBe(s0.candidates![1].lowRes); // the next click refines the candidate shown
    expect(withCandidate(s0, -1).candidate).toBe(2);
    expect(withCandidate(s0, 3).candidate).toBe(0);
    expect(withCandidate(emptyState(), 1)).toEqual(emptyState());
  });

  it("replacing the candidate is not an undo step", () => {
    const h = new EditHistory();
    const s = withCandidate({ ...emptyState(), points: [{ x: 1, y: 1, label: 1 }], candidates: [cand(0.9, 1), cand(0.7, 0)] }, 0);
    h.push(s);
    h.replace(withCandidate(h.state, 1));
    expect(h.state.candidate).toBe(1);
    expect(h.undo()).toBe(true);
    expect(h.state.points).toEqual([]);
    expect(h.redo()).toBe(true);
    expect(h.state.candidate).toBe(1);
  });
});

describe("proposal review order", () => {
  const obj = (key: string, source: string) => ({ key, source }) as ListedObject;
  const list = [obj("a1", "assisted"), obj("a2", "automatic"), obj("a3", "semi_auto_accepted"), obj("a4", "semi_auto"), obj("a5", "automatic")];

  it("counts stage 2 prefill and stage 3 automatic masks as proposals", () => {
    expect(list.filter(isProposal).map((o) => o.key)).toEqual(["a2", "a4", "a5"]);
  });

  it("goes to the next unreviewed proposal, wrapping, and to none when all are reviewed", () => {
    expect(nextProposal(list)).toBe("a2");
    expect(nextProposal(list, "a2")).toBe("a4");
    expect(nextProposal(list, "a5")).toBe("a2");
    expect(nextProposal(list, "gone")).toBe("a2"); // a rejected (deleted) one: start from the top
    expect(nextProposal([obj("a1", "assisted"), obj("a3", "semi_auto_accepted")], "a1")).toBeNull();
  });
});

describe("mask overlay pixels", () => {
  it("colours the mask's pixels inside the box, in a full-size or a box-size buffer", () => {
    const w = 5, hgt = 4;
    const mask = new Uint8Array(w * hgt);
    mask[1 * w + 3] = 1;
    mask[2 * w + 1] = 1;
    const full = new Uint8ClampedArray(w * hgt * 4);
    fillMaskPixels(mask, w, { x: 1, y: 1, w: 3, h: 2 }, new Uint32Array(full.buffer), w, 0, 0, [255, 0, 0], 200);
    expect(full[(1 * w + 3) * 4]).toBe(255);
    expect(full[(1 * w + 3) * 4 + 3]).toBe(200);
    expect(full[(2 * w + 1) * 4 + 3]).toBe(200);
    expect(full.reduce((s, v) => s + (v ? 1 : 0), 0)).toBe(4); // two pixels: red and alpha each
    const box = new Uint8ClampedArray(3 * 2 * 4); // the 3×2 box at (1, 1)
    fillMaskPixels(mask, w, { x: 1, y: 1, w: 3, h: 2 }, new Uint32Array(box.buffer), 3, 1, 1, [0, 0, 255], 90);
    expect(box[(0 * 3 + 2) * 4 + 2]).toBe(255); // mask (3, 1) → box (2, 0)
    expect(box[(1 * 3 + 0) * 4 + 3]).toBe(90); // mask (1, 2) → box (0, 1)
    expect(box.reduce((s, v) => s + (v ? 1 : 0), 0)).toBe(4);
  });
});

describe("prefetch of the next image", () => {
  const img = (id: number, status: ImageInfo["status"]) => ({ id, status, project_id: 1, file_name: `${id}.png`, width: 2, height: 2, sha256: "", created_at: "" });
  let byStatus: Record<string, ImageInfo[]>;
  let calls: string[];
  let embeddingStatus: number;
  beforeEach(() => {
    calls = [];
    embeddingStatus = 202;
    byStatus = { embedded: [], in_progress: [], new: [] };
    vi.stubGlobal("fetch", vi.fn(async (url: string) => {
      calls.push(url);
      const u = new URL(url, "http://x");
      if (u.pathname.endsWith("/images")) {
        const key = (u.searchParams.get("sent_back") === "true" ? "sent_back:" : "") + (u.searchParams.get("status") ?? "");
        const items = byStatus[key] ?? [];
        return new Response(JSON.stringify({ items: items.slice(0, Number(u.searchParams.get("limit"))), total: items.length }), { status: 200 });
      }
      if (u.pathname.endsWith("/file")) return new Response(new Uint8Array([1, 2, 3]), { status: 200 });
      if (embeddingStatus === 202) return new Response(JSON.stringify({ status: "pending" }), { status: 202, headers: { "Retry-After": "0.2" } });
      return new Response(JSON.stringify({ detail: "the embedding failed" }), { status: embeddingStatus });
    }));
    vi.stubGlobal("createImageBitmap", vi.fn(async () => ({ width: 2, height: 2 })));
  });
  afterEach(() => { vi.unstubAllGlobals(); });

  it("follows the work queue's order: embedded, then in progress, then new, skipping the current image", async () => {
    const api = new ApiClient("/api/v1", "tok");
    byStatus.new = [img(3, "new"), img(4, "new")];
    byStatus.in_progress = [img(7, "in_progress")];
    expect((await predictNextImage(api, 1, 7))?.id).toBe(3);
    byStatus.embedded = [img(5, "embedded"), img(6, "embedded")];
    expect((await predictNextImage(api, 1, 5))?.id).toBe(6);
    expect((await predictNextImage(api, 1, 1))?.id).toBe(5);
    byStatus = { embedded: [img(5, "embedded")], in_progress: [], new: [] };
    expect(await predictNextImage(api, 1, 5)).toBeNull();
    // an image review sent back comes before all of them
    byStatus = { embedded: [img(5, "embedded")], in_progress: [img(8, "in_progress")], "sent_back:in_progress": [img(8, "in_progress")], new: [] };
    expect((await predictNextImage(api, 1, 5))?.id).toBe(8);
    expect((await predictNextImage(api, 1, 8))?.id).toBe(5);
    // an image whose embedding failed is leased last by the queue: not guessed
    byStatus = { embedded: [], in_progress: [], new: [{ ...img(3, "new"), error: "cannot decode the image file" }, img(4, "new")] };
    expect((await predictNextImage(api, 1, null))?.id).toBe(4);
  });

  it("hands over the download only for the image it guessed, and asks for its embedding ahead of time", async () => {
    const api = new ApiClient("/api/v1", "tok");
    byStatus.embedded = [img(5, "embedded"), img(6, "embedded")];
    const p = new Prefetcher(api, 1);
    await p.start(5);
    expect(p.state.imageId).toBe(6);
    expect(calls.some((c) => c.includes("/images/6/embedding"))).toBe(true);
    expect(calls.some((c) => c.includes("/images/6/file"))).toBe(true);
    expect(p.take(9)).toBeNull();
    const progress: string[] = [];
    const taken = p.take(6, (e) => progress.push(e.state));
    expect(taken).not.toBeNull();
    expect(p.take(6)).toBeNull(); // handed over once
    await new Promise((r) => setTimeout(r, 300));
    expect(progress).toContain("computing"); // the rest of the wait is reported to the page
    embeddingStatus = 422;
    await expect(taken!).rejects.toThrow(/embedding failed/); // the page then loads it the ordinary way
  });

  it("stops downloading a guess that is cancelled", async () => {
    const api = new ApiClient("/api/v1", "tok");
    byStatus.new = [img(8, "new")];
    const p = new Prefetcher(api, 1);
    await p.start(null);
    expect(p.state.imageId).toBe(8);
    p.cancel();
    expect(p.take(8)).toBeNull();
    await new Promise((r) => setTimeout(r, 500));
    const polls = calls.filter((c) => c.includes("/images/8/embedding")).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(calls.filter((c) => c.includes("/images/8/embedding")).length).toBe(polls);
  });
});

describe("brush strokes", () => {
  it("fill the whole segment between two reported positions, unlike disks at the ends alone", () => {
    const w = 100, h = 20;
    const stroke = new Uint8Array(w * h);
    paintStroke(stroke, w, h, 5, 10, 95, 10, 3, 1);
    for (let x = 5; x <= 94; x++) expect(stroke[10 * w + x]).toBe(1);
    expect(stroke[2 * w + 50]).toBe(0); // no wider than the brush
    const ends = new Uint8Array(w * h);
    paintDisk(ends, w, h, 5, 10, 3, 1);
    paintDisk(ends, w, h, 95, 10, 3, 1);
    expect(ends[10 * w + 50]).toBe(0);
    paintStroke(stroke, w, h, 30, 10, 60, 10, 2, 0); // the eraser clears along its path
    expect(stroke[10 * w + 45]).toBe(0);
    expect(stroke[10 * w + 20]).toBe(1);
  });
});

describe("EditHistory's undo steps for large masks", () => {
  it("keeps 100 steps of small masks and fewer of large ones, within its byte budget", () => {
    const h = new EditHistory(1000);
    expect(h.stepsFor(0)).toBe(100);
    expect(h.stepsFor(5)).toBe(100);
    expect(h.stepsFor(50)).toBe(20);
    expect(h.stepsFor(10_000)).toBe(10); // never fewer than 10
    for (let i = 0; i < 30; i++) h.push({ ...emptyState(), mask: new Uint8Array(50).fill(i) });
    let undone = 0;
    while (h.undo()) undone++;
    expect(undone).toBe(20);
    expect(h.state.mask?.[0]).toBe(9); // the oldest kept: the 10th push's mask (pushes 0..8 were dropped with the empty start)
  });
});
