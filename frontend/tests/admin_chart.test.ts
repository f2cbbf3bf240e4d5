import { describe, expect, it } from "vitest";
import { evalValue, numericMetrics } from "../src/admin/chart";

describe("model version metrics", () => {
  it("flattens the numeric leaves", () => {
    expect(numericMetrics({ a: 1, b: { c: 2, d: "x", e: [3] } })).toEqual({ a: 1, "b.c": 2 });
  });

  it("reads a version's own held-out number, never its base model's or a baseline's", () => {
    const round = { heldout_before: { "noc@85": 18 }, heldout_after: { "noc@85": 17 }, n_train_images: 30 };
    expect(evalValue(round, "noc@85")).toBe(17);
    const shipped = { baseline_grabcut: { "noc@85": 11 }, heldout: { "noc@85": 17.6 } };
    expect(evalValue(shipped, "noc@85")).toBe(17.6);
    expect(evalValue({ "noc@85": 16 }, "noc@85")).toBe(16);
    expect(evalValue({ heldout_before: { "noc@85": 18 } }, "noc@85")).toBeNull();
    expect(evalValue(null, "noc@85")).toBeNull();
  });
});
