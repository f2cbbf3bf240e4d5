import { describe, expect, it } from "vitest";
import fixture from "./fixtures/refine_cases.json";
import { createRequire } from "node:module";
import { GrabCutPass, type OpenCv, readyOpenCv } from "../src/decoder/grabcut";
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
});
