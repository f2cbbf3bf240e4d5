import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiClient } from "../src/api/client";
import { discardRefused, dropFromOutbox, enqueue, flushOutbox, readOutbox, readRefused, retryRefused } from "../src/annotator/outbox";
import { EditHistory, emptyState, paintDisk } from "../src/annotator/history";

class MemoryStorage {
  private items = new Map<string, string>();
  getItem(k: string): string | null { return this.items.get(k) ?? null; }
  setItem(k: string, v: string): void { this.items.set(k, String(v)); }
  removeItem(k: string): void { this.items.delete(k); }
}

const body = (uid: string) => ({
  label_id: 1, segmentation: { size: [2, 2] as [number, number], counts: "04" }, source: "assisted" as const, client_uid: uid,
});

function respond(status: number, json: unknown): Response {
  return new Response(JSON.stringify(json), { status, headers: { "Content-Type": "application/json" } });
}

describe("autosave outbox", () => {
  beforeEach(() => { vi.stubGlobal("localStorage", new MemoryStorage()); });
  afterEach(() => { vi.unstubAllGlobals(); });

  it("keeps entries while the server is unreachable and sends them once it is back", async () => {
    enqueue(7, body("u1"));
    vi.stubGlobal("fetch", vi.fn(async () => { throw new TypeError("Failed to fetch"); }));
    const api = new ApiClient("/api/v1", "tok");
    const first = await flushOutbox(api);
    expect(first.pending).toBe(1);
    expect(first.lastError).toMatch(/cannot reach the server/);
    const seen: unknown[] = [];
    vi.stubGlobal("fetch", vi.fn(async (url: string, init: RequestInit) => {
      seen.push([url, JSON.parse(String(init.body)), new Headers(init.headers).get("Authorization")]);
      return respond(201, { id: 3, ...body("u1") });
    }));
    const second = await flushOutbox(api);
    expect(second.saved).toHaveLength(1);
    expect(readOutbox()).toHaveLength(0);
    expect(seen).toEqual([["/api/v1/images/7/annotations", body("u1"), "Bearer tok"]]);
  });

  it("drops one entry that was never sent (an accept undone offline) and leaves the rest", () => {
    enqueue(7, body("u1"));
    enqueue(7, body("u2"));
    expect(dropFromOutbox("u1")).toBe(true);
    expect(dropFromOutbox("u1")).toBe(false);
    expect(readOutbox().map((e) => e.body.client_uid)).toEqual(["u2"]);
  });

  it("takes back a refused entry too (an accept undone while the server refuses it)", async () => {
    enqueue(7, body("r"));
    vi.stubGlobal("fetch", vi.fn(async () => respond(422, { detail: "no" })));
    await flushOutbox(new ApiClient("/api/v1", "tok"));
    expect(readRefused()).toHaveLength(1);
    expect(dropFromOutbox("r")).toBe(true);
    expect(readRefused()).toHaveLength(0);
    expect(dropFromOutbox("r")).toBe(false);
  });

  it("keeps everything on 401 and 5xx, sets aside (and reports) a mask the server refuses for good", async () => {
    enqueue(1, body("a"));
    enqueue(1, body("b"));
    const api = new ApiClient("/api/v1", "tok");
    vi.stubGlobal("fetch", vi.fn(async () => respond(401, { detail: "token expired" })));
    expect((await flushOutbox(api)).pending).toBe(2);
    vi.stubGlobal("fetch", vi.fn(async () => respond(503, { detail: "busy" })));
    expect((await flushOutbox(api)).pending).toBe(2);
    vi.stubGlobal("fetch", vi.fn(async (_u: string, init: RequestInit) =>
      JSON.parse(String(init.body)).client_uid === "a" ? respond(422, { detail: "segmentation: bad counts" }) : respond(201, { id: 9 })));
    const r = await flushOutbox(api);
    expect(r.rejected.map((x) => x.error)).toEqual(["segmentation: bad counts (HTTP 422)"]);
    expect(r.saved).toHaveLength(1);
    expect(readOutbox()).toHaveLength(0);
    // not lost: it waits in the refused list, survives (it is in localStorage), and can be retried with another label
    expect(readRefused().map((e) => [e.body.client_uid, e.error])).toEqual([["a", "segmentation: bad counts (HTTP 422)"]]);
    expect(retryRefused("a", 5)).toBe(true);
    expect(readRefused()).toHaveLength(0);
    expect(readOutbox().map((e) => [e.body.client_uid, e.body.label_id])).toEqual([["a", 5]]);
    vi.stubGlobal("fetch", vi.fn(async () => respond(404, { detail: "label 5 not found" })));
    await flushOutbox(api);
    expect(readRefused()).toHaveLength(1);
    discardRefused("a");
    expect(readRefused()).toHaveLength(0);
    expect(retryRefused("a")).toBe(false);
  });
});

describe("edit history", () => {
  it("undoes and redoes, and a new edit drops the redo branch", () => {
    const h = new EditHistory();
    const s1 = { ...emptyState(), points: [{ x: 1, y: 2, label: 1 as const }] };
    const s2 = { ...s1, points: [...s1.points, { x: 3, y: 4, label: 0 as const }] };
    h.push(s1);
    h.push(s2);
    expect(h.undo()).toBe(true);
    expect(h.state).toBe(s1);
    expect(h.redo()).toBe(true);
    expect(h.state).toBe(s2);
    h.undo();
    h.push({ ...emptyState() });
    expect(h.redo()).toBe(false);
    expect(h.undo()).toBe(true);
    expect(h.state).toBe(s1);
  });

  it("paints and erases disks inside the image only", () => {
    const m = new Uint8Array(5 * 4);
    paintDisk(m, 5, 4, 1, 1, 1, 1); // pixel centres within 1 of (1, 1): the 2×2 top-left block
    paintDisk(m, 5, 4, -10, -10, 3, 1); // entirely outside: no effect, no error
    expect(Array.from(m.slice(0, 5))).toEqual([1, 1, 0, 0, 0]);
    expect(Array.from(m.slice(5, 10))).toEqual([1, 1, 0, 0, 0]);
    paintDisk(m, 5, 4, 0.5, 0.5, 0.5, 0);
    expect(m[0]).toBe(0);
    expect(m.reduce((a, b) => a + b, 0)).toBe(3);
  });
});
