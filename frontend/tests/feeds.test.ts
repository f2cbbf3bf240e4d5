import { describe, expect, it } from "vitest";
import { buildFeeds } from "../src/decoder/feeds";
import { logitsToMask } from "../src/decoder/masks";

describe("decoder feeds (official web-demo layout)", () => {
  const orig: [number, number] = [480, 640];
  const input: [number, number] = [768, 1024];

  it("scales a click to the 1024 frame and appends the padding point", () => {
    const f = buildFeeds({ points: [{ x: 320, y: 240, label: 1 }], box: null }, orig, input, null);
    expect(Array.from(f.point_coords.data)).toEqual([512, 384, 0, 0]);
    expect(Array.from(f.point_labels.data)).toEqual([1, -1]);
    expect(f.point_coords.dims).toEqual([1, 2, 2]);
    expect(f.has_mask_input.data[0]).toBe(0);
    expect(f.mask_input.data.every((v) => v === 0)).toBe(true);
    expect(Array.from(f.orig_im_size.data)).toEqual([480, 640]);
  });

  it("puts box corners last with labels 2 and 3 and no padding point", () => {
    const f = buildFeeds({ points: [{ x: 10, y: 20, label: 0 }], box: { x0: 100, y0: 50, x1: 20, y1: 200 } }, orig, input, null);
    expect(Array.from(f.point_labels.data)).toEqual([0, 2, 3]);
    expect(Array.from(f.point_coords.data)).toEqual([16, 32, 32, 80, 160, 320]);
  });

  it("feeds back the previous low-res logits", () => {
    const prev = new Float32Array(256 * 256).fill(2.5);
    const f = buildFeeds({ points: [{ x: 1, y: 1, label: 1 }], box: null }, orig, input, prev);
    expect(f.has_mask_input.data[0]).toBe(1);
    expect(f.mask_input.data[100]).toBe(2.5);
    expect(() => buildFeeds({ points: [{ x: 1, y: 1, label: 1 }], box: null }, orig, input, new Float32Array(5))).toThrow(/mask_input/);
  });

  it("refuses an empty prompt", () => {
    expect(() => buildFeeds({ points: [], box: null }, orig, input, null)).toThrow(/at least one point/);
  });

  it("thresholds logits at 0 per mask channel", () => {
    const logits = Float32Array.from([-1, 0.5, 0, 3, /* second mask */ 1, 1, -1, -1]);
    expect(Array.from(logitsToMask(logits, 2, 2, 0))).toEqual([0, 1, 0, 1]);
    expect(Array.from(logitsToMask(logits, 2, 2, 1))).toEqual([1, 1, 0, 0]);
  });
});
