import { describe, expect, it } from "vitest";
import cases from "./fixtures/rle_cases.json";
import { decodeRle, encodeRle, maskBbox, stringToRuns } from "../src/rle";

const toMask = (s: string) => Uint8Array.from(s, (c) => (c === "1" ? 1 : 0));

describe("COCO RLE", () => {
  for (const c of cases) {
    it(`matches pycocotools on a ${c.height}×${c.width} mask`, () => {
      const mask = toMask(c.mask);
      expect(encodeRle(mask, c.height, c.width)).toEqual({ size: [c.height, c.width], counts: c.counts });
      expect(Array.from(decodeRle({ size: [c.height, c.width], counts: c.counts }))).toEqual(Array.from(mask));
    });
  }

  it("round-trips large runs (negative deltas and multi-char numbers)", () => {
    const h = 300, w = 517;
    const mask = new Uint8Array(h * w);
    for (let y = 10; y < 290; y++) for (let x = 3; x < 500; x++) if ((x - 250) ** 2 / 4 + (y - 150) ** 2 < 130 ** 2) mask[y * w + x] = 1;
    mask[0] = 1;
    const rle = encodeRle(mask, h, w);
    expect(decodeRle(rle)).toEqual(mask);
  });

  it("accepts uncompressed count lists", () => {
    expect(Array.from(decodeRle({ size: [2, 2], counts: [1, 2, 1] }))).toEqual([0, 1, 1, 0]);
  });

  it("rejects a mask of the wrong size and a counts string that does not cover the image", () => {
    expect(() => encodeRle(new Uint8Array(5), 2, 3)).toThrow(/expected 2×3/);
    expect(() => decodeRle({ size: [4, 4], counts: "03" })).toThrow(/covers 3 pixels/);
    expect(() => stringToRuns("0\u007f")).toThrow(/invalid character/);
  });

  it("computes the bounding box", () => {
    const m = new Uint8Array(4 * 5);
    m[1 * 5 + 2] = 1;
    m[3 * 5 + 4] = 1;
    expect(maskBbox(m, 4, 5)).toEqual([2, 1, 3, 3]);
    expect(maskBbox(new Uint8Array(4), 2, 2)).toBeNull();
  });
});
