/**
 * COCO run-length encoding of binary masks, byte-compatible with pycocotools.
 *
 * Masks in the client are row-major `Uint8Array`s of H×W (1 = inside). COCO RLE runs go down the
 * columns (Fortran order), start with a run of zeros, and the compressed `counts` string stores
 * each run (minus the run two places earlier, from the third on) as 5-bit groups offset by '0'.
 */

export interface CocoRle {
  size: [number, number];
  counts: string;
}

/** Run lengths (column-major, starting with zeros) of a row-major H×W mask. */
export function maskToRuns(mask: Uint8Array, height: number, width: number): number[] {
  if (mask.length !== height * width) {
    throw new Error(`mask has ${mask.length} pixels, expected ${height}×${width} = ${height * width}`);
  }
  const runs: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        runs.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  runs.push(run);
  return runs;
}

/** The pycocotools compressed string of a list of run lengths. */
export function runsToString(runs: number[]): string {
  let out = "";
  for (let i = 0; i < runs.length; i++) {
    let x = runs[i];
    if (i > 2) x -= runs[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out += String.fromCharCode(c + 48);
    }
  }
  return out;
}

/** Run lengths from a pycocotools compressed string. */
export function stringToRuns(counts: string): number[] {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    let c = 0;
    while (more) {
      if (p >= counts.length) throw new Error(`truncated RLE counts string at character ${p}`);
      c = counts.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`invalid character ${JSON.stringify(counts[p])} in RLE counts`);
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
    }
    if (c & 0x10) x |= -1 << (5 * k);
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

/** Encode a row-major H×W binary mask as COCO RLE. */
export function encodeRle(mask: Uint8Array, height: number, width: number): CocoRle {
  return { size: [height, width], counts: runsToString(maskToRuns(mask, height, width)) };
}

/** Decode COCO RLE (compressed string or an uncompressed count list) to a row-major H×W mask. */
export function decodeRle(rle: { size: [number, number]; counts: string | number[] }): Uint8Array {
  const [height, width] = rle.size;
  const runs = typeof rle.counts === "string" ? stringToRuns(rle.counts) : rle.counts;
  const total = runs.reduce((a, b) => a + b, 0);
  if (total !== height * width) {
    throw new Error(`RLE covers ${total} pixels but its size is ${height}×${width} = ${height * width}`);
  }
  const mask = new Uint8Array(height * width);
  let i = 0;
  let value = 0;
  for (const run of runs) {
    if (value) {
      for (let j = i; j < i + run; j++) {
        const x = Math.floor(j / height);
        const y = j - x * height;
        mask[y * width + x] = 1;
      }
    }
    i += run;
    value ^= 1;
  }
  return mask;
}

/** Bounding box [x, y, w, h] of a row-major mask, or null when it is empty. */
export function maskBbox(mask: Uint8Array, height: number, width: number): [number, number, number, number] | null {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (mask[row + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}
