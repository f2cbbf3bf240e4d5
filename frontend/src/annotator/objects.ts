/**
 * The object list beside the canvas: the image's stored annotations (and ones still in the
 * outbox) with visibility toggle, relabel and delete, plus one-key accept/reject of `semi_auto`
 * proposals in stage 2.
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
  labelId: number;
  source: string;
  layer: MaskLayer;
  visible: boolean;
}

export function makeObject(ann: Annotation | null, rle: { size: [number, number]; counts: string }, labelId: number,
  source: string, labels: Label[], pendingUid: string | null): ListedObject {
  const [height, width] = rle.size;
  const layer = new MaskLayer(width, height);
  const color = parseColor(labels.find((l) => l.id === labelId)?.color ?? "#1e90ff");
  layer.paint(decodeRle(rle), color, 110);
  return { key: ann ? `a${ann.id}` : `p${pendingUid}`, annotation: ann, pendingUid, labelId, source, layer, visible: true };
}

export interface ObjectActions {
  toggle(o: ListedObject): void;
  remove(o: ListedObject): void;
  relabel(o: ListedObject, labelId: number): void;
  accept(o: ListedObject): void;
  reject(o: ListedObject): void;
}

/** Render the list into `el`; `selected` is the semi-auto proposal that A/R keys act on. */
export function renderObjects(el: HTMLElement, objects: ListedObject[], labels: Label[], actions: ObjectActions, selected: string | null): void {
  const rows = objects.map((o, i) => {
    const label = labels.find((l) => l.id === o.labelId);
    const select = h("select", { "aria-label": "label", onchange: (e) => actions.relabel(o, Number((e.target as HTMLSelectElement).value)) },
      ...labels.map((l) => h("option", { value: l.id, selected: l.id === o.labelId }, l.name)));
    if (!o.annotation) select.disabled = true;
    const proposal = o.source === "semi_auto";
    return h("li", { class: `object${selected === o.key ? " selected" : ""}`, "data-key": o.key, "data-source": o.source },
      h("span", { class: "swatch", style: `background:${label?.color ?? "#888"}` }),
      `#${i + 1} `, select, ` ${o.source}${o.pendingUid ? " (saving…)" : ""} `,
      h("button", { onclick: () => actions.toggle(o), title: "show/hide" }, o.visible ? "hide" : "show"),
      o.annotation ? h("button", { onclick: () => actions.remove(o), title: "delete" }, "delete") : null,
      proposal ? h("button", { onclick: () => actions.accept(o), title: "accept proposal (A)" }, "accept") : null,
      proposal ? h("button", { onclick: () => actions.reject(o), title: "reject proposal (R)" }, "reject") : null,
    );
  });
  mount(el, h("h3", {}, `Objects (${objects.length})`), objects.length ? h("ul", {}, ...rows) : h("p", {}, "No objects yet."));
}
