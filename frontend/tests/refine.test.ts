import { describe, expect, it, vi } from "vitest";
import fixture from "./fixtures/refine_cases.json";
import { createRequire } from "node:module";
import { cropBox, GrabCutPass, type OpenCv, openGrabCutPass, readyOpenCv } from "../src/decoder/grabcut";
import type { PromptPoint } from "../src/decoder/protocol";
import { boxMean, GuidedRefiner, type RefineParams } from "../src/decoder/refine";

// OpenCV.js through node's require (vitest's ESM interop would chase the module's Emscripten
// `then` while importing it); the page loads it with `loadOpenCv`, checked in the browser tests
let cvReady: Promise<{ cv: OpenCv }> | null = null;
async function openCv(): Promise<OpenCv> {
  cvReady ??= readyOpenCv(createRequire(import.meta.url)("@techstark/opencv-js"));
  return (await cvReady).cv;
}

const bytes = (b64: string): Uint8Array => Uint8Array.from(Buffer.from(b64, "base64"));

describe("guided refinement (same arithmetic as backend/services/mask_refine.py)", () => {
  for (const c of fixture.cases) {
    const crop = c.params.grabcut_crop ? `, window ${c.params.grabcut_crop}` : "";
    const gc = c.params.grabcut ? `, GrabCut ${c.params.grabcut} px${crop}` : "";
    it(`matches the Python refinement on a ${c.height}×${c.width} image (work ${c.params.work_size}, r ${c.params.radius}${gc}${c.erased ? ", erased speck kept" : ""})`, async () => {
      const rgba = new Uint8ClampedArray(bytes(c.rgba));
      const raw = bytes(c.logits);
      const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      const want = bytes(c.mask), tie = bytes(c.tie);
      const params = c.params as RefineParams;
      const pass = params.grabcut
        ? new GrabCutPass(await openCv(), rgba, c.width, c.height, { grabcut: params.grabcut,
          grabcut_iters: params.grabcut_iters ?? 2, grabcut_disc: params.grabcut_disc ?? 5,
          grabcut_crop: params.grabcut_crop ?? 0 })
        : null;
      const refiner = new GuidedRefiner(rgba, c.width, c.height, params, pass);
      const points = c.points as PromptPoint[];
      const n = c.width * c.height;
      for (let k = 0; k < 2; k++) {
        const got = refiner.refine(logits, k, points);
        let wrong = 0;
        for (let i = 0; i < n; i++) if (!tie[k * n + i] && got[i] !== want[k * n + i]) wrong++;
        expect(wrong).toBe(0);
        // the refinement moved pixels (it is not the plain threshold), except where it would have
        // erased the decoder's mask: then that mask is kept
        let moved = 0;
        for (let i = 0; i < n; i++) if (got[i] !== (logits[k * n + i] > 0 ? 1 : 0)) moved++;
        if (c.erased) expect(moved).toBe(0);
        else expect(moved).toBeGreaterThan(0);
        expect(got.some((v) => v === 1)).toBe(true);
      }
      // the first click's choice: the same predicted IoUs after refinement, the same candidate
      const byRule = new GuidedRefiner(rgba, c.width, c.height, { ...params, select: "refined" }, pass);
      const choice = byRule.choose(logits, 2, c.scores, points);
      expect(choice.best).toBe(c.choice.best);
      choice.ious.forEach((v, k) => expect(v).toBeCloseTo(c.choice.ious[k], 6));
      expect(choice.masks.every((m) => m !== null)).toBe(true);
      const byHead = refiner.choose(logits, 2, c.scores, points);  // the default: the decoder's IoU
      expect(byHead.best).toBe(0);
      expect(byHead.masks[1]).toBeNull();
      expect(byHead.ious).toEqual(c.scores);
      pass?.dispose();
    }, 30_000);
  }

  it("box means clip the window at the border", () => {
    // 1×4 grid, radius 1: [1,2,3,4] → [(1+2)/2, (1+2+3)/3, (2+3+4)/3, (3+4)/2]
    expect(Array.from(boxMean(Float64Array.from([1, 2, 3, 4]), 1, 4, 1))).toEqual([1.5, 2, 3, 3.5]);
    expect(Array.from(boxMean(Float64Array.from([1, 2, 3, 4]), 4, 1, 1))).toEqual([1.5, 2, 3, 3.5]);
  });

  it("the GrabCut pass without its OpenCV state is refused", () => {
    const params: RefineParams = { method: "guided", work_size: 16, radius: 2, eps: 0.01, grabcut: 64 };
    expect(() => new GuidedRefiner(new Uint8ClampedArray(36), 3, 3, params)).toThrow(/GrabCut/);
  });

  it("rejects a guide of the wrong size", () => {
    const params: RefineParams = { method: "guided", work_size: 16, radius: 2, eps: 0.01 };
    expect(() => new GuidedRefiner(new Uint8ClampedArray(10), 3, 3, params)).toThrow(/3×3×4/);
  });

  it("the worker opens the pass the refinement asks for, and refines without it when OpenCV.js fails", async () => {
    const params: RefineParams = { method: "guided", work_size: 16, radius: 2, eps: 0.01, grabcut: 64, grabcut_crop: 0.75 };
    const rgba = new Uint8ClampedArray(8 * 6 * 4).fill(128);
    // no pass asked for: OpenCV.js is not even loaded
    const never = vi.fn(async () => { throw new Error("must not load"); });
    expect(await openGrabCutPass(rgba, 8, 6, { ...params, grabcut: 0 }, never)).toBeNull();
    expect(never).not.toHaveBeenCalled();
    // a loader that fails: no pass, a warning that says why, and the refiner still works without it
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const failed = await openGrabCutPass(rgba, 8, 6, params, async () => { throw new Error("network down"); });
      expect(failed).toBeNull();
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/without the GrabCut pass.*network down/));
      const refiner = new GuidedRefiner(rgba, 8, 6, { ...params, grabcut: 0 }, failed);
      expect(refiner.refine(new Float32Array(48).fill(3)).length).toBe(48);
    } finally {
      warn.mockRestore();
    }
    // OpenCV.js loads: a pass with the window the parameters give
    const pass = await openGrabCutPass(rgba, 8, 6, params, openCv);
    expect(pass).toBeInstanceOf(GrabCutPass);
    pass?.dispose();
  });

  it("the pass's window is the box around the mask and the positive clicks, widened and clipped", () => {
    const mask = new Uint8Array(200 * 100);
    for (let y = 40; y < 50; y++) for (let x = 60; x < 80; x++) mask[y * 200 + x] = 1;
    // the same boxes as the Python test (tests/backend/test_mask_refine.py)
    expect(cropBox(mask, 200, 100, [], 0.5)).toEqual({ x0: 50, y0: 30, x1: 90, y1: 60 });
    expect(cropBox(mask, 200, 100, [{ x: 100.7, y: 45, label: 1 }, { x: 5, y: 5, label: 0 }], 0.5))
      .toEqual({ x0: 39, y0: 19, x1: 122, y1: 71 });
    expect(cropBox(mask, 200, 100, [{ x: 195, y: 95, label: 1 }], 0.5)).toEqual({ x0: 0, y0: 0, x1: 200, y1: 100 });
    expect(cropBox(new Uint8Array(200 * 100), 200, 100, [{ x: 5, y: 5, label: 0 }], 0.5)).toBeNull();
  });
});
