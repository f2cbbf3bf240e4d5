/**
 * The review page (admins): the project's submitted images one after another, each with its masks
 * drawn and listed (label, source, who made it, clicks and seconds). The reviewer marks the wrong
 * masks (R on the highlighted row, or its button) and either approves the image (Shift+A: every
 * mask accepted, the image `reviewed`) or sends it back to the annotators (Shift+R) with the marked
 * masks rejected and a note saying what to fix, which the annotator sees when the image comes back.
 * N skips an image for now, P goes back to the one before; O opens the image in the annotator to
 * fix it oneself.
 */
import { ApiError } from "../api/client";
import type { Annotation, ImageInfo, Label, User } from "../api/types";
import { makeObject } from "../annotator/objects";
import { AnnotationCanvas } from "../canvas/canvas";
import { MaskLayer } from "../canvas/layers";
import { errorText, h, mount, plural, statusLine } from "../dom";
import { api } from "../session";

/** Exposed for tests: the image shown, its masks marked wrong, and the decisions sent. */
export interface ReviewDebug {
  imageId: number | null; ready: boolean; marked: () => number[]; selected: () => number | null; decisions: number;
}
declare global { interface Window { maskloopReview?: ReviewDebug } }

interface Row { ann: Annotation; layer: MaskLayer; visible: boolean }

/**
 * The first submitted image not in `passed`, in id order (null when none), and how many submitted
 * images there are; pages through the project's `done` images.
 */
export async function nextToReview(projectId: number, passed: ReadonlySet<number>, page = 50):
  Promise<{ image: ImageInfo | null; total: number }> {
  for (let offset = 0; ; offset += page) {
    const list = await api.listImages(projectId, offset, page, "done");
    const found = list.items.find((im) => !passed.has(im.id));
    if (found) return { image: found, total: list.total };
    if (offset + list.items.length >= list.total || !list.items.length) return { image: null, total: list.total };
  }
}

export async function reviewPage(root: HTMLElement, projectId: number, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  const canvasEl = h("canvas", { id: "stage", width: 900, height: 640, tabindex: 0 });
  const objectsEl = h("div", { id: "objects" });
  const infoEl = h("p", { id: "review-info" });
  const earlierNote = h("p", { id: "review-earlier", class: "hint", hidden: true });
  const noteEl = h("textarea", { id: "review-note", rows: 3, cols: 40, maxlength: 2000,
    placeholder: "note to the annotators when sending back: what to fix" }) as HTMLTextAreaElement;
  const counter = h("span", { id: "review-count" });
  const approveBtn = h("button", { id: "review-approve", title: "every mask is right: accept them all (Shift+A)",
    onclick: () => void approve() }, "Approve (Shift+A)");
  const rejectBtn = h("button", { id: "review-reject", title: "back to the annotators with the marked masks and the note (Shift+R)",
    onclick: () => void sendBack() }, "Send back (Shift+R)");
  const nextBtn = h("button", { id: "review-next", title: "leave this image for later (N)", onclick: () => void showNext() }, "Skip ▶ (N)");
  const prevBtn = h("button", { id: "review-prev", title: "the image reviewed before this one (P)", onclick: () => void showPrevious() }, "◀ Previous (P)");
  const openBtn = h("button", { id: "review-open", title: "open this image in the annotator to fix it yourself (O)",
    onclick: () => { if (image) go(`/annotate/${projectId}/image/${image.id}`); } }, "Open in annotator (O)");
  const help = h("p", { class: "help" }, "R: mark the highlighted mask wrong / right again · ↑/↓ or a click on a row: highlight another · Shift+A: approve the image · Shift+R: send it back (marked masks rejected, with the note) · N: skip · P: previous · O: open in the annotator · H: hide/show masks · wheel zoom, drag to pan");
  mount(root, h("div", { class: "annotator review" },
    h("div", { class: "toolbar" }, h("button", { onclick: () => go(`/admin/${projectId}`) }, "← Project"), prevBtn, approveBtn, rejectBtn,
      nextBtn, openBtn, counter),
    status,
    h("div", { class: "work" }, canvasEl, h("aside", {}, infoEl, earlierNote, objectsEl, h("label", {}, "Note to the annotators", h("br"), noteEl))),
    help));

  const debug: ReviewDebug = { imageId: null, ready: false, marked: () => [...marked], selected: () => selected, decisions: 0 };
  window.maskloopReview = debug;
  const canvas = new AnnotationCanvas(canvasEl);
  let labels: Label[] = [];
  let users: User[] = [];
  let image: ImageInfo | null = null;
  let rows: Row[] = [];
  let marked = new Set<number>();
  let selected: number | null = null;
  /** images decided or skipped here (not offered again by N), and the order they were shown in (P) */
  const passed = new Set<number>();
  const shown: number[] = [];
  let busy = false;

  const labelOf = (id: number | null): Label | undefined => labels.find((l) => l.id === id);
  const userName = (id: number | null): string => (id === null ? "" : users.find((u) => u.id === id)?.username ?? `user ${id}`);

  function draw(): void {
    canvas.objects = rows.map((r) => ({ key: String(r.ann.id), layer: r.layer, visible: r.visible }));
    canvas.highlight = selected === null ? null : String(selected);
    canvas.draw();
  }

  function renderRows(): void {
    const list = h("ul", {}, ...rows.map((r, i) => {
      const wrong = marked.has(r.ann.id);
      const a = r.ann;
      const li = h("li", { class: `object${selected === a.id ? " selected" : ""}${wrong ? " review-wrong" : ""}`, "data-annotation-id": a.id,
        "data-review": a.review_state },
      h("span", { class: "swatch", style: `background:${labelOf(a.label_id)?.color ?? "#888"}` }),
      `#${i + 1} ${labelOf(a.label_id)?.name ?? "(no label)"} · ${a.source}`,
      a.annotator_id !== null ? ` · ${userName(a.annotator_id)}` : "",
      a.clicks !== null ? ` · ${plural(a.clicks, "click")}` : "", a.seconds !== null ? ` · ${a.seconds.toFixed(1)} s` : "",
      a.review_state !== "pending" ? h("span", { class: "review-state" }, ` (${a.review_state})`) : null, " ",
      h("button", { class: "mark", title: "mark this mask wrong, or right again (R)", onclick: () => { toggleMark(a.id); } },
        wrong ? "✗ wrong (unmark)" : "mark wrong"),
      h("button", { onclick: () => { r.visible = !r.visible; renderRows(); draw(); } }, r.visible ? "hide" : "show"));
      li.addEventListener("click", (e) => { if (e.target === li) { selected = a.id; renderRows(); draw(); } });
      li.addEventListener("mouseenter", () => { canvas.hovered = String(a.id); canvas.requestDraw(); });
      li.addEventListener("mouseleave", () => { canvas.hovered = null; canvas.requestDraw(); });
      return li;
    }));
    mount(objectsEl, h("h3", {}, `Masks (${rows.length})${marked.size ? `, ${marked.size} marked wrong` : ""}`),
      rows.length ? list : h("p", {}, "No masks on this image: approve it if nothing in it needs a mask."));
    list.querySelector<HTMLElement>("li.selected")?.scrollIntoView({ block: "nearest" });
  }

  function toggleMark(id: number | null): void {
    if (id === null) return;
    if (marked.has(id)) marked.delete(id);
    else marked.add(id);
    selected = id;
    renderRows();
    draw();
  }

  function move(step: number): void {
    if (!rows.length) return;
    const at = rows.findIndex((r) => r.ann.id === selected);
    selected = rows[(at + step + rows.length) % rows.length].ann.id;
    renderRows();
    draw();
  }

  async function open(im: ImageInfo): Promise<void> {
    debug.ready = false;
    image = im;
    debug.imageId = im.id;
    if (shown[shown.length - 1] !== im.id) shown.push(im.id);
    status.say(`Loading ${im.file_name}…`);
    const [blob, anns] = await Promise.all([api.imageBlob(im.id), api.listAnnotations(im.id)]);
    const bitmap = await createImageBitmap(blob);
    canvas.setImage(bitmap, bitmap.width, bitmap.height);
    rows = anns.map((a) => ({ ann: a, layer: makeObject(a, a.segmentation, a.label_id, a.source, labels, null).layer, visible: true }));
    // masks rejected by an earlier review and not changed since stay marked until unmarked
    marked = new Set(anns.filter((a) => a.review_state === "rejected").map((a) => a.id));
    selected = rows[0]?.ann.id ?? null;
    noteEl.value = "";
    earlierNote.hidden = !im.review_note;
    earlierNote.textContent = im.review_note ? `Sent back before: ${im.review_note}` : "";
    infoEl.textContent = `${im.file_name} (${im.width}×${im.height}), image ${im.id}, ${im.status}`;
    renderRows();
    draw();
    debug.ready = true;
    const reviewable = im.status === "done" || im.status === "reviewed";
    status.say(reviewable ? `Reviewing ${im.file_name}: ${plural(rows.length, "mask")}.`
      : `${im.file_name} is ${im.status}: it was sent back and is not submitted again yet.`, reviewable ? "info" : "error");
    canvasEl.focus();
  }

  async function showNext(skip = true): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      if (image && skip) passed.add(image.id);
      const { image: im, total } = await nextToReview(projectId, passed);
      counter.textContent = ` ${plural(total, "submitted image")} to review`;
      if (!im) {
        image = null;
        debug.imageId = null;
        rows = [];
        marked.clear();
        canvas.objects = [];
        renderRows();
        infoEl.textContent = "";
        earlierNote.hidden = true;
        status.say(total ? `No other submitted image: ${plural(total, "image")} skipped here (reload to see them again).`
          : "Nothing to review: every submitted image is reviewed.", "ok");
        return;
      }
      await open(im);
    } catch (err) {
      status.say(`The next image could not be loaded: ${errorText(err)}`, "error");
    } finally {
      busy = false;
    }
  }

  async function showPrevious(): Promise<void> {
    const at = image ? shown.lastIndexOf(image.id) : shown.length;
    const prev = at > 0 ? shown[at - 1] : undefined;
    if (prev === undefined) { status.say("No earlier image in this review."); return; }
    try {
      shown.splice(at); // going back and forth again does not grow the list
      await open(await api.getImage(prev));
    } catch (err) {
      status.say(`Image ${prev} could not be opened: ${errorText(err)}`, "error");
    }
  }

  async function decide(decision: "approve" | "reject"): Promise<void> {
    if (!image || busy) return;
    const im = image;
    const note = noteEl.value.trim();
    if (decision === "approve" && marked.size) {
      status.say(`${plural(marked.size, "mask")} marked wrong: send the image back (Shift+R), or mark ${marked.size === 1 ? "it" : "them"} right again (R).`, "error");
      return;
    }
    if (decision === "reject" && !note && !marked.size) {
      status.say("Say what to fix before sending the image back: mark the wrong masks (R) or write a note.", "error");
      noteEl.focus();
      return;
    }
    busy = true;
    try {
      await api.reviewImage(im.id, decision, decision === "reject" ? note || null : null, decision === "reject" ? [...marked] : []);
      debug.decisions++;
    } catch (err) {
      const stale = err instanceof ApiError && err.status === 409 ? " (N takes the next image)" : "";
      status.say(`${im.file_name} was not ${decision === "approve" ? "approved" : "sent back"}: ${errorText(err)}${stale}`, "error");
      return;
    } finally {
      busy = false;
    }
    passed.add(im.id);
    const what = decision === "approve" ? `Approved ${im.file_name}.`
      : `Sent ${im.file_name} back${marked.size ? ` with ${plural(marked.size, "mask")} rejected` : ""}${note ? " and the note" : ""}.`;
    await showNext(false);
    if (image === null || image.id !== im.id) status.say(`${what} ${status.textContent ?? ""}`, "ok");
  }
  const approve = (): Promise<void> => decide("approve");
  const sendBack = (): Promise<void> => decide("reject");

  // zoom and pan
  let drag: { x: number; y: number } | null = null;
  canvasEl.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY }; });
  window.addEventListener("mouseup", () => { drag = null; });
  canvasEl.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const r = canvasEl.getBoundingClientRect();
    canvas.view.pan(((e.clientX - drag.x) * canvasEl.width) / r.width, ((e.clientY - drag.y) * canvasEl.height) / r.height);
    drag = { x: e.clientX, y: e.clientY };
    canvas.requestDraw();
  });
  canvasEl.addEventListener("wheel", (e) => { e.preventDefault(); canvas.wheelZoom(e); }, { passive: false });

  const onKey = (e: KeyboardEvent): void => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("keydown", onKey); return; }
    const tag = (e.target as HTMLElement | null)?.tagName ?? "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag) || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key.toLowerCase();
    if (k === "a" && e.shiftKey) void approve();
    else if (k === "r" && e.shiftKey) void sendBack();
    else if (k === "r") toggleMark(selected);
    else if (e.key === "ArrowDown") move(1);
    else if (e.key === "ArrowUp") move(-1);
    else if (k === "n") void showNext();
    else if (k === "p") void showPrevious();
    else if (k === "o" && image) go(`/annotate/${projectId}/image/${image.id}`);
    else if (k === "h") { canvas.masksHidden = !canvas.masksHidden; canvas.draw(); }
    else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);

  try {
    const [project, us] = await Promise.all([api.getProject(projectId), api.listUsers()]);
    labels = project.labels;
    users = us;
    await showNext(false);
  } catch (err) {
    status.say(errorText(err), "error");
  }
}
