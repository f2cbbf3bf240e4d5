import { describe, expect, it } from "vitest";
import { previousOf, readVisited, VISITED_KEPT, withoutImage, withVisit } from "../src/annotator/visited";

describe("visited images (P: previous image)", () => {
  it("keeps the order of first visits: going back does not reorder", () => {
    let list: number[] = [];
    for (const id of [5, 9, 12]) list = withVisit(list, id);
    expect(list).toEqual([5, 9, 12]);
    expect(previousOf(list, 12)).toBe(9);
    list = withVisit(list, 9); // opened again by going back
    expect(list).toEqual([5, 9, 12]);
    expect(previousOf(list, 9)).toBe(5);
    expect(previousOf(list, 5)).toBeNull();
  });
  it("from an image not in the list (or none) goes to the newest one", () => {
    expect(previousOf([5, 9], 40)).toBe(9);
    expect(previousOf([5, 9], null)).toBe(9);
    expect(previousOf([], null)).toBeNull();
    expect(previousOf([7], 7)).toBeNull();
  });
  it("keeps the newest VISITED_KEPT ids and can forget one", () => {
    let list: number[] = [];
    for (let i = 0; i < VISITED_KEPT + 5; i++) list = withVisit(list, i);
    expect(list.length).toBe(VISITED_KEPT);
    expect(list[0]).toBe(5);
    expect(withoutImage([1, 2, 3], 2)).toEqual([1, 3]);
  });
  it("reads what was stored, and nothing from a damaged entry", () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null } as unknown as Storage;
    store.set("a", JSON.stringify([1, 2, "x", 3.5, 4]));
    store.set("b", "{not json");
    store.set("c", JSON.stringify({ 1: 2 }));
    expect(readVisited(storage, "a")).toEqual([1, 2, 4]);
    expect(readVisited(storage, "b")).toEqual([]);
    expect(readVisited(storage, "c")).toEqual([]);
    expect(readVisited(storage, "missing")).toEqual([]);
  });
});
