import { describe, expect, it } from "vitest";
import { MAX_MASK_SIDE, maskWorkSize, upsampleMask } from "../src/decoder/masks";

describe("maskWorkSize", () => {
  it("keeps images up to the decoder's frame and scales larger ones to it, keeping the aspect", () => {
    expect(maskWorkSize(240, 320)).toEqual([240, 320]);
    expect(maskWorkSize(768, 1024)).toEqual([768, 1024]);
    expect(maskWorkSize(3000, 4000)).toEqual([768, 1024]);
    expect(maskWorkSize(6000, 1000)).toEqual([MAX_MASK_SIDE, 171]);
  });
});

describe("upsampleMask", () => {
  it("returns the same array at the same size", () => {
    const m = new Uint8Array([1, 0, 0, 1]);
    expect(upsampleMask(m, 2, 2, 2, 2)).toBe(m);
  });

  it("gives each output pixel the source pixel under its centre", () => {
    // 2×3 source → 4×6: every source pixel becomes a 2×2 block
    const src = new Uint8Array([1, 0, 1, 0, 1, 0]);
    const out = upsampleMask(src, 2, 3, 4, 6);
    const rows = Array.from({ length: 4 }, (_, y) => Array.from(out.slice(y * 6, y * 6 + 6)).join(""));
    expect(rows).toEqual(["110011", "110011", "001100", "001100"]);
  });

  it("keeps the area in proportion for a non-integer scale", () => {
    const sh = 75, sw = 100, dh = 293, dw = 391;
    const src = new Uint8Array(sh * sw);
    for (let y = 10; y < 50; y++) for (let x = 20; x < 70; x++) src[y * sw + x] = 1;
    const out = upsampleMask(src, sh, sw, dh, dw);
    const area = out.reduce((s, v) => s + v, 0);
    const expected = 40 * 50 * (dh / sh) * (dw / sw);
    expect(Math.abs(area - expected) / expected).toBeLessThan(0.03);
    expect(out[Math.floor(30 * dh / sh) * dw + Math.floor(45 * dw / sw)]).toBe(1);
    expect(out[5 * dw + 5]).toBe(0);
  });

  it("matches a per-pixel nearest-centre lookup on random masks, up and down, any ratio", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const sizes: [number, number, number, number][] = [
      [7, 9, 23, 31], [768, 1024, 3000, 4000].map((v) => v / 8) as [number, number, number, number],
      [40, 30, 13, 11], [5, 5, 5, 17], [1, 1, 3, 4], [17, 3, 17, 50], [50, 60, 51, 59],
    ];
    for (const [sh, sw, dh, dw] of sizes) {
      for (const density of [0, 0.05, 0.5, 0.97, 1]) {
        const src = new Uint8Array(sh * sw);
        // blobs in rows: runs of random length, so runs meet the row ends too
        for (let i = 0; i < src.length; i++) src[i] = rand() < density ? 1 : 0;
        const out = upsampleMask(src, sh, sw, dh, dw);
        const want = new Uint8Array(dh * dw);
        for (let y = 0; y < dh; y++) {
          const sy = Math.min(sh - 1, Math.floor(((y + 0.5) * sh) / dh));
          for (let x = 0; x < dw; x++) want[y * dw + x] = src[sy * sw + Math.min(sw - 1, Math.floor(((x + 0.5) * sw) / dw))];
        }
        expect(out.length).toBe(dh * dw);
        expect(Buffer.from(out).equals(Buffer.from(want)), `${sh}×${sw} → ${dh}×${dw}, density ${density}`).toBe(true);
      }
    }
  });
});

describe("maskBounds", async () => {
  const { maskBounds } = await import("../src/canvas/layers");
  it("finds the box of the set pixels, or null", () => {
    const w = 7, h = 5;
    const m = new Uint8Array(w * h);
    expect(maskBounds(m, w, h)).toBeNull();
    m[1 * w + 4] = 1;
    m[3 * w + 2] = 1;
    expect(maskBounds(m, w, h)).toEqual({ x: 2, y: 1, w: 3, h: 3 });
    m[4 * w + 6] = 1;
    expect(maskBounds(m, w, h)).toEqual({ x: 2, y: 1, w: 5, h: 4 });
  });
});
