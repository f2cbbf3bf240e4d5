/**
 * The object list beside the canvas: the image's stored annotations (and ones still in the
 * outbox) with visibility toggle, relabel and delete, plus one-key accept/reject of the model's
 * proposals: stage 2's prefilled `semi_auto` masks and stage 3's `automatic` masks.
 */
import type { Annotation, Label } from "../api/types";
import { h, mount } from "../dom";
import { MaskLayer } from "../canvas/layers";
import { parseColor } from "../decoder/masks";
import { decodeRle } from "../rle";

export interface ListedObject {
  key: string;
  annotation: Annotation | null;
  /** still waiting in the outbox */
  pendingUid: string | null;
  labelId: number | null;
  source: string;
  layer: MaskLayer;
  visible: boolean;
  /** the server refused to store it (the reason); it waits for a retry or a discard */
  refused?: string | null;
}

export function makeObject(ann: Annotation | null, rle: { size: [number, number]; counts: string }, labelId: number | null,
  source: string, labels: Label[], pendingUid: string | null): ListedObject {
  const [height, width] = rle.size;
  const layer = new MaskLayer(width, height, true);
  const color = parseColor(labels.find((l) => l.id === labelId)?.color ?? "#1e90ff");
  layer.paint(decodeRle(rle), color, 110);
  return { key: ann ? `a${ann.id}` : `p${pendingUid}`, annotation: ann, pendingUid, labelId, source, layer, visible: true };
}

/** Sources whose masks the model proposed and a person has not reviewed yet. */
export const PROPOSAL_SOURCES: readonly string[] = ["semi_auto", "automatic"];

export const isProposal = (o: ListedObject): boolean => PROPOSAL_SOURCES.includes(o.source);

/** The proposal to review next: the first unreviewed one after `after` (in list order, wrapping), else null. */
export function nextProposal(objects: ListedObject[], after: string | null = null): string | null {
  const start = after === null ? -1 : objects.findIndex((o) => o.key === after);
  for (let i = 1; i <= objects.length; i++) {
    const o = objects[(start + i + objects.length) % objects.length];
    if (o && isProposal(o)) return o.key;
  }
  return null;
}

export interface ObjectActions {
  toggle(o: ListedObject): void;
  remove(o: ListedObject): void;
  relabel(o: ListedObject, labelId: number): void;
  accept(o: ListedObject): void;
  reject(o: ListedObject): void;
  select(o: ListedObject): void;
  /** the pointer entered (the object) or left (null) a row: show which mask it is */
  hover(o: ListedObject | null): void;
  /** send a refused mask again with the label picked in its row */
  retry(o: ListedObject, labelId: number | null): void;
  discard(o: ListedObject): void;
}

/** Render the list into `el`; `selected` is the semi-auto proposal that A/R keys act on. */
export function renderObjects(el: HTMLElement, objects: ListedObject[], labels: Label[], actions: ObjectActions, selected: string | null): void {
  const rows = objects.map((o, i) => {
    const label = labels.find((l) => l.id === o.labelId);
    const select = h("select", { "aria-label": "label", onchange: (e) => actions.relabel(o, Number((e.target as HTMLSelectElement).value)) },
      o.labelId === null ? h("option", { value: "", selected: true }, "(no label)") : null,
      ...labels.map((l) => h("option", { value: l.id, selected: l.id === o.labelId }, l.name)));
    if (!o.annotation && !o.refused) select.disabled = true;
    const proposal = isProposal(o);
    const rejected = o.annotation?.review_state === "rejected";
    const li = h("li", { class: `object${selected === o.key ? " selected" : ""}${rejected ? " review-rejected" : ""}`, "data-key": o.key, "data-source": o.source },
      h("span", { class: "swatch", style: `background:${label?.color ?? "#888"}` }),
      `#${i + 1} `, select, ` ${o.source}${o.refused ? "" : o.pendingUid ? " (saving…)" : ""} `,
      o.annotation?.object_score != null ? h("span", { class: "object-score",
        title: "object score of an automatic mask: how much it looks like a whole object (edges, colour contrast, size)" },
        `score ${o.annotation.object_score.toFixed(3)} `) : null,
      rejected ? h("span", { class: "review-state", title: "a reviewer marked this mask wrong: fix it (delete and redo, or relabel)" },
        "rejected in review ") : null,
      o.refused ? h("span", { class: "refused" }, `not saved: ${o.refused} `) : null,
      o.refused ? h("button", { class: "retry", title: "send again with the label chosen here",
        onclick: () => actions.retry(o, select.value ? Number(select.value) : null) }, "retry") : null,
      o.refused ? h("button", { class: "discard", title: "give up this mask", onclick: () => actions.discard(o) }, "discard") : null,
      h("button", { onclick: () => actions.toggle(o), title: "show/hide" }, o.visible ? "hide" : "show"),
      o.annotation ? h("button", { onclick: () => actions.remove(o), title: "delete" }, "delete") : null,
      proposal ? h("button", { onclick: () => actions.accept(o), title: "accept proposal (A)" }, "accept") : null,
      proposal ? h("button", { onclick: () => actions.reject(o), title: "reject proposal (R)" }, "reject") : null,
    );
    if (proposal) li.addEventListener("click", (e) => { if (e.target === li) actions.select(o); });
    li.addEventListener("mouseenter", () => actions.hover(o));
    li.addEventListener("mouseleave", () => actions.hover(null));
    return li;
  });
  // the list scrolls inside its panel (stage 3 gives dozens of rows): a re-render keeps where the
  // annotator had scrolled to, and brings the highlighted proposal into the panel's view if it is not
  const scrolled = el.querySelector("ul")?.scrollTop ?? 0;
  const list = h("ul", {}, ...rows);
  mount(el, h("h3", {}, `Objects (${objects.length})`), objects.length ? list : h("p", {}, "No objects yet."));
  list.scrollTop = scrolled;
  const row = list.querySelector<HTMLElement>("li.selected");
  if (row) {
    const top = row.offsetTop; // the list is the row's offset parent (position: relative)
    if (top < list.scrollTop || top + row.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - (list.clientHeight - row.offsetHeight) / 2);
    }
  }
}
