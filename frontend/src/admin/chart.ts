/** A small SVG bar chart of numeric metrics (before/after pairs or single values). */

const NS = "http://www.w3.org/2000/svg";

function el(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Bars for each name; `series` are drawn side by side (e.g. before, after). */
export function barChart(names: string[], series: { label: string; color: string; values: (number | null)[] }[], perRowScale = false): SVGSVGElement {
  const rowH = 14 * series.length + 10;
  const width = 520, labelW = 170, barW = width - labelW - 60;
  // perRowScale: each row has its own scale (metrics of different units in one chart)
  const all = Math.max(1e-9, ...series.flatMap((s) => s.values.map((v) => Math.abs(v ?? 0))));
  const rowMax = names.map((_, i) => (perRowScale ? Math.max(1e-9, ...series.map((s) => Math.abs(s.values[i] ?? 0))) : all));
  const svg = el("svg", { width, height: names.length * rowH + 24, class: "chart", role: "img" }) as SVGSVGElement;
  names.forEach((name, i) => {
    const y = i * rowH;
    svg.append(el("text", { x: 0, y: y + 12, "font-size": 11 }, name));
    series.forEach((s, j) => {
      const v = s.values[i];
      if (v === null || !Number.isFinite(v)) return;
      const w = (Math.abs(v) / rowMax[i]) * barW;
      svg.append(el("rect", { x: labelW, y: y + j * 14, width: Math.max(1, w), height: 12, fill: s.color }));
      svg.append(el("text", { x: labelW + w + 4, y: y + j * 14 + 10, "font-size": 10 }, v.toFixed(3)));
    });
  });
  series.forEach((s, j) => {
    const y = names.length * rowH + 12;
    svg.append(el("rect", { x: labelW + j * 90, y: y - 9, width: 10, height: 10, fill: s.color }));
    svg.append(el("text", { x: labelW + j * 90 + 14, y, "font-size": 11 }, s.label));
  });
  return svg;
}

/** The numeric leaves of a metrics object, flattened to "a.b" names. */
export function numericMetrics(obj: unknown, prefix = ""): Record<string, number> {
  const out: Record<string, number> = {};
  if (obj && typeof obj === "object") {
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
      const name = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "number" && Number.isFinite(v)) out[name] = v;
      else if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, numericMetrics(v, name));
    }
  }
  return out;
}

/**
 * A model version's own held-out number for an evaluation key: a round's `heldout_after`, the
 * shipped model's `heldout` (its eval report), or a top-level value; never the base model's
 * `heldout_before` or a baseline's. Null when there is none.
 */
export function evalValue(metrics: unknown, key: string): number | null {
  const flat = numericMetrics(metrics);
  for (const k of [`heldout_after.${key}`, `heldout.${key}`, key]) if (k in flat) return flat[k];
  return null;
}
