import { describe, expect, it } from "vitest";
import fixtures from "./fixtures/embeddings.json";
import { parseEmbedding } from "../src/embedding";

function bufferOf(b64: string): ArrayBuffer {
  const bytes = Uint8Array.from(Buffer.from(b64, "base64"));
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

describe("embedding wire format", () => {
  for (const dtype of ["float32", "float16", "int8"] as const) {
    it(`parses a ${dtype} blob written by backend/services/embedding_format.py`, () => {
      const f = fixtures[dtype];
      const emb = parseEmbedding(bufferOf(f.blob));
      expect(emb.header.dtype).toBe(dtype);
      expect(emb.header.shape).toEqual([1, 3, 4, 5]);
      expect(emb.header.orig_size).toEqual([480, 640]);
      expect(emb.header.input_size).toEqual([768, 1024]);
      expect(emb.data.length).toBe(60);
      for (let i = 0; i < 60; i++) expect(emb.data[i]).toBeCloseTo(f.expected[i], 5);
    });
  }

  it("names the problem with bad bytes", () => {
    expect(() => parseEmbedding(new TextEncoder().encode("NOTEMBED....").buffer)).toThrow(/bad magic/);
    const good = new Uint8Array(bufferOf(fixtures.float16.blob));
    expect(() => parseEmbedding(good.slice(0, good.length - 2).buffer)).toThrow(/expected 120/);
    const badHeader = good.slice();
    badHeader[12] = "!".charCodeAt(0);
    expect(() => parseEmbedding(badHeader.buffer)).toThrow(/bad embedding header/);
  });
});
