import { describe, expect, it } from "vitest";
import { filterLabels, labelForKey, labelKey } from "../src/annotator/labels";

const labels = Array.from({ length: 12 }, (_, i) => ({ id: 100 + i, name: `l${i + 1}`, color: "#fff" }));

describe("label keys", () => {
  it("digits 1-9 pick the first nine labels and 0 the tenth", () => {
    expect(labelForKey("1", labels)?.id).toBe(100);
    expect(labelForKey("9", labels)?.id).toBe(108);
    expect(labelForKey("0", labels)?.id).toBe(109);
    expect([labelKey(0), labelKey(8), labelKey(9), labelKey(10)]).toEqual(["1", "9", "0", null]);
  });
  it("a key with no label, or not a digit, picks nothing", () => {
    expect(labelForKey("0", labels.slice(0, 3))).toBeNull();
    expect(labelForKey("4", labels.slice(0, 3))).toBeNull();
    expect(labelForKey("a", labels)).toBeNull();
    expect(labelForKey("F1", labels)).toBeNull();
  });
});

describe("label filter", () => {
  const named = ["person", "bicycle", "car", "carrot", "cup", "scar"].map((name, i) => ({ id: i, name, color: "#fff" }));
  it("puts names starting with the query first, then names containing it, case-insensitively", () => {
    expect(filterLabels("CAR", named).map((l) => l.name)).toEqual(["car", "carrot", "scar"]);
    expect(filterLabels("cy", named).map((l) => l.name)).toEqual(["bicycle"]);
    expect(filterLabels("zebra", named)).toEqual([]);
  });
  it("an empty query keeps every label in order", () => {
    expect(filterLabels("  ", named).map((l) => l.id)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
