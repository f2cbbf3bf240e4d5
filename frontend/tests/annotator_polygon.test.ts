import { describe, expect, it } from "vitest";
import { closesPolygon, fillPolygon } from "../src/annotator/polygon";

const W = 40, H = 30;
const count = (m: Uint8Array) => m.reduce((s, v) => s + v, 0);

describe("fillPolygon", () => {
  it("fills a rectangle through pixel corners exactly", () => {
    const m = new Uint8Array(W * H);
    const n = fillPolygon(m, W, H, [{ x: 5, y: 4 }, { x: 15, y: 4 }, { x: 15, y: 12 }, { x: 5, y: 12 }], 1);
    expect(n).toBe(10 * 8);
    expect(count(m)).toBe(80);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      expect(m[y * W + x]).toBe(x >= 5 && x < 15 && y >= 4 && y < 12 ? 1 : 0);
    }
  });

  it("fills a triangle with about its area, in either winding", () => {
    const tri = [{ x: 2, y: 2 }, { x: 32, y: 2 }, { x: 2, y: 26 }];
    const a = new Uint8Array(W * H), b = new Uint8Array(W * H);
    fillPolygon(a, W, H, tri, 1);
    fillPolygon(b, W, H, [...tri].reverse(), 1);
    expect(Math.abs(count(a) - (30 * 24) / 2)).toBeLessThan(20);
    expect(a).toEqual(b);
  });

  it("leaves the hole of a self-crossing bow tie and clips to the image", () => {
    const m = new Uint8Array(W * H);
    fillPolygon(m, W, H, [{ x: -10, y: -10 }, { x: 50, y: -10 }, { x: 50, y: 50 }, { x: -10, y: 50 }], 1);
    expect(count(m)).toBe(W * H);
    const bow = new Uint8Array(W * H);
    fillPolygon(bow, W, H, [{ x: 0, y: 0 }, { x: 20, y: 20 }, { x: 20, y: 0 }, { x: 0, y: 20 }], 1);
    expect(bow[10 * W + 2]).toBe(1); // the left lobe is inside
    expect(bow[2 * W + 10]).toBe(0); // the top wedge between the crossing edges is outside
  });

  it("removes pixels with value 0 and ignores fewer than three vertices", () => {
    const m = new Uint8Array(W * H).fill(1);
    fillPolygon(m, W, H, [{ x: 0, y: 0 }, { x: 10, y: 0 }, { x: 10, y: 10 }, { x: 0, y: 10 }], 0);
    expect(count(m)).toBe(W * H - 100);
    expect(fillPolygon(m, W, H, [{ x: 0, y: 0 }, { x: 10, y: 10 }], 1)).toBe(0);
  });
});

describe("closesPolygon", () => {
  it("closes near the first vertex once there are three", () => {
    const pts = [{ x: 10, y: 10 }, { x: 20, y: 10 }];
    expect(closesPolygon(pts, { x: 11, y: 10 }, 4)).toBe(false);
    pts.push({ x: 20, y: 20 });
    expect(closesPolygon(pts, { x: 11, y: 11 }, 4)).toBe(true);
    expect(closesPolygon(pts, { x: 16, y: 10 }, 4)).toBe(false);
  });
});
