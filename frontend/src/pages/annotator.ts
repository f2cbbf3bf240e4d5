/**
 * The annotator page: lease the next image, load its embedding (the one after is prefetched
 * meanwhile), and turn clicks/boxes into masks with the in-browser decoder; cycle the candidates
 * of an ambiguous first click (Tab), accept with a label (Enter), clear (Esc), undo/redo,
 * brush/eraser, zoom/pan, review the model's proposals (stage 2 prefill, stage 3 automatic masks),
 * submit and go on (N). Accepted masks go through the autosave outbox.
 */
import { ApiError } from "../api/client";
import type { Annotation, Label, Lease, Project, Rejection } from "../api/types";
import { AnnotationCanvas } from "../canvas/canvas";
import { DecoderClient, sortByIou, type DecodeResult } from "../decoder/client";
import { parseColor } from "../decoder/masks";
import type { DecodedMask, Prompt, PromptPoint } from "../decoder/protocol";
import { imagePixels, type RefineParams } from "../decoder/refine";
import { maskWorkSize } from "../decoder/masks";
import { previousOf, readVisited, visitedKey, withoutImage, withVisit } from "../annotator/visited";
import { errorText, h, mount, plural, statusLine } from "../dom";
import type { EmbeddingProgress } from "../embedding";
import { decodeRle, encodeRle } from "../rle";
import { api, currentUser } from "../session";
import { EditHistory, paintStroke, withCandidate, type EditState } from "../annotator/history";
import { closesPolygon, fillPolygon, type Vertex } from "../annotator/polygon";
import { isProposal, makeObject, nextProposal, renderObjects, type ListedObject } from "../annotator/objects";
import { discardRefused, dropFromOutbox, enqueue, flushOutbox, newClientUid, readOutbox, readRefused, retryRefused } from "../annotator/outbox";
import { filterLabels, labelForKey, labelKey } from "../annotator/labels";
import { loadImageData, Prefetcher, type LoadedImage, type PrefetchState } from "../annotator/prefetch";

type Tool = "prompt" | "brush" | "eraser" | "polygon";

type Rle = { size: [number, number]; counts: string };

/** Exposed for tests and debugging: what the page last drew, accepted, loaded and prefetched. */
export interface AnnotatorDebug {
  imageId: number | null; ready: boolean; decodes: number; currentRle: () => Rle | null; lastAccepted: Rle | null;
  /** the prompts of the object being edited, in image pixels */
  prompt: () => { points: PromptPoint[]; box: Prompt["box"] };
  /** candidates of the current first click: which one is shown, their predicted IoUs (shown order) and RLEs */
  candidates: () => { index: number; ious: number[]; rles: Rle[]; refined: boolean[] } | null;
  view: () => { scale: number; offsetX: number; offsetY: number };
  /** every image opened: whether it came from the prefetch, and ms from lease to ready */
  loads: { imageId: number; prefetched: boolean; ms: number }[];
  prefetch: PrefetchState | null;
  /**
   * the last click: ms from the mouse event to the mask drawn (the decoder's own mask when it comes
   * before its refinement), to the refined mask drawn (null when not refined: refinement off, or
   * another click came first), and whether a hover decode answered it
   */
  lastClick: { ms: number; refinedMs: number | null; reused: boolean; decoderMs: number; refineMs: number } | null;
  /** decodes made ahead of follow-up clicks while the pointer rested */
  ahead: number;
  /** box masks shown while a box was being dragged */
  boxPreviews: number;
  /** whether the current image's masks are refined with its pixels (edge-aware) */
  refined: boolean;
  /** refinements of a drawn mask asked for and not finished (the decoder's own mask is on screen meanwhile) */
  refining: number;
  /** [height, width] at which the current image's masks are decoded and refined (smaller than the image for large photos) */
  maskWorkSize: [number, number] | null;
  /** the vertices of the polygon being drawn (image coordinates) */
  polygon: () => { x: number; y: number }[];
  /** set true (tests) to log every hover and box preview drawn, in order, in `previews` */
  recordPreviews: boolean;
  /** the previews drawn since `recordPreviews` was set (newest 100): which decode, refined or not, its area */
  previews: { kind: "hover" | "box"; decodeId: number; refined: boolean; area: number; t: number }[];
}
declare global { interface Window { maskloop?: AnnotatorDebug } }

let decoder: DecoderClient | null = null;
let decoderModel = -1;
/** how the current model's masks are refined with the image (from GET /models/{id}), or none */
let refineParams: RefineParams | null = null;
/** whether the current image's pixels went to the decoder worker for refinement */
let guideSent = false;
/** width of the object panel beside the image, in CSS pixels (style.css: `.work > aside`) */
const ASIDE_WIDTH = 360;
/** localStorage key of the annotator's "snap to image" switch */
const SNAP_KEY = "maskloop.snap";

/**
 * The annotator on `projectId`'s work queue; with `pickedImage` (the admin's image list, path
 * `/annotate/{project}/image/{id}`) it opens that image first, whatever its status, then goes on
 * with the queue.
 */
const OPACITY_KEY = "maskloop.maskOpacity";
/** the mask opacity this browser last used (1 when never set or unreadable) */
function storedOpacity(): number {
  const v = Number(localStorage.getItem(OPACITY_KEY));
  return Number.isFinite(v) && v >= 0.1 && v <= 1 ? v : 1;
}

/** A short fingerprint of a text (to notice that the guidelines changed). */
function guideHash(text: string): string {
  let h1 = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h1 = Math.imul(h1 ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h1.toString(16);
}

export async function annotatorPage(root: HTMLElement, projectId: number, go: (path: string) => void,
  pickedImage: number | null = null): Promise<void> {
  const status = statusLine();
  const canvasEl = h("canvas", { id: "stage", width: 960, height: 680, tabindex: 0 });
  const objectsEl = h("div", { id: "objects" });
  const labelsEl = h("div", { id: "labels" });
  // with more than ten labels (digits 1–9 and 0 pick the first ten): L focuses this filter; typing
  // narrows the buttons by name, Enter takes the first match, Esc goes back to the image
  const labelFilter = h("input", { id: "label-filter", type: "search", placeholder: "label… (L)", hidden: true,
    title: "type to find a label; Enter picks the first match" }) as HTMLInputElement;
  const saveEl = h("p", { id: "autosave" });
  const timing = h("p", { id: "timing", class: "help" });
  const stageHint = h("p", { id: "stage-hint", class: "hint" });
  // why a reviewer sent this image back (its note, the masks rejected), when they did
  const reviewHint = h("p", { id: "review-hint", class: "hint", hidden: true });
  // the project's annotation guidelines: opened by itself the first time (and when they change), ? toggles
  const guideText = h("div", { id: "guidelines-text" });
  const guidePanel = h("div", { id: "guidelines", class: "card guidelines", hidden: true },
    h("strong", {}, "Guidelines "), h("button", { title: "hide the guidelines (?)", onclick: () => toggleGuidelines(false) }, "hide"), guideText);
  const guideBtn = h("button", { id: "guidelines-toggle", hidden: true, title: "the project's annotation guidelines (?)",
    onclick: () => toggleGuidelines() }, "Guidelines (?)");
  const help = h("p", { class: "help" }, "Click: add point · right/Alt+click: negative · drag: box · Tab/Shift+Tab: next/previous candidate of a first click · 1–9, 0: label (L: find a label by name) · Enter: accept · Esc: clear · Z/Ctrl+Z undo · Ctrl+Y/Shift+Z redo · B/E brush/eraser ([ ] size; the brush also paints a mask from nothing) · D: polygon (click the vertices, click the first one or Enter to close; Alt closes it as a hole; Backspace removes the last vertex) · A/R/F accept/reject/fix the highlighted proposal · G: snap masks to the image on/off · H: hide/show all masks · O: mask opacity (100/60/30 %) · wheel zoom · Space+drag or middle-drag pan · ?: the project's guidelines · N: submit & next · P: back to the previous image (to correct it) · S: skip this image (it goes to another annotator)");
  const nextBtn = h("button", { id: "next", onclick: () => void submitAndNext() }, "Next image (N)");
  const prevBtn = h("button", { id: "previous", title: "back to the image you opened before this one, to correct it (P)",
    onclick: () => void previousImage() }, "◀ Previous (P)");
  const skipBtn = h("button", { id: "skip", title: "give this image to another annotator (S)", onclick: () => void skipImage() }, "Skip (S)");
  // snapping masks to the image (the refinement the server announces): on unless the annotator
  // switched it off (G), remembered in this browser
  let snap = localStorage.getItem(SNAP_KEY) !== "off";
  const snapBox = h("input", { id: "snap", type: "checkbox", checked: snap,
    onchange: () => void setSnap((snapBox as HTMLInputElement).checked) }) as HTMLInputElement;
  const snapEl = h("label", { id: "snap-toggle", hidden: true,
    title: "refine every mask with the image's colours and edges (G); off: the model's own masks" }, snapBox, " Snap to image (G)");
  // how strongly masks cover the image (O cycles 100/60/30 %; the slider sets any), remembered in this browser
  const opacityEl = h("input", { id: "mask-opacity", type: "range", min: 10, max: 100, step: 5,
    value: Math.round(storedOpacity() * 100), title: "mask opacity (O)", "aria-label": "mask opacity",
    oninput: () => setOpacity(Number(opacityEl.value) / 100) }) as HTMLInputElement;
  const candInfo = h("span", { id: "cand-info" });
  const candidatesEl = h("span", { id: "candidates", class: "candidates", hidden: true },
    h("button", { id: "cand-prev", title: "previous candidate (Shift+Tab)", onclick: () => { cycle(-1); canvasEl.focus(); } }, "◀"),
    candInfo,
    h("button", { id: "cand-next", title: "next candidate (Tab)", onclick: () => { cycle(1); canvasEl.focus(); } }, "▶"));
  mount(root, h("div", { class: "annotator" },
    h("div", { class: "toolbar" }, h("button", { onclick: () => go("/projects") }, "← Projects"), prevBtn, nextBtn, skipBtn, guideBtn, labelFilter, labelsEl, candidatesEl, snapEl,
      h("label", { class: "opacity", title: "mask opacity (O)" }, "masks ", opacityEl)),
    // the status has a row of its own and the stage hint sits beside the image, so neither a message
    // of another length nor a hint that comes and goes moves the image under the annotator's pointer
    status,
    h("div", { class: "work" }, canvasEl, h("aside", {}, guidePanel, reviewHint, stageHint, objectsEl, saveEl, timing)), help));

  const debug: AnnotatorDebug = {
    imageId: null, ready: false, decodes: 0, currentRle: () => null, lastAccepted: null, candidates: () => null,
    prompt: () => ({ points: history.state.points, box: history.state.box }),
    view: () => ({ scale: canvas.view.scale, offsetX: canvas.view.offsetX, offsetY: canvas.view.offsetY }),
    loads: [], prefetch: null, lastClick: null, ahead: 0, boxPreviews: 0, refined: false, refining: 0,
    recordPreviews: false, previews: [], polygon: () => polygon, maskWorkSize: null,
  };
  /** Draw a hover or box preview's mask, and log it when a test asked for that. */
  function drawPreview(kind: "hover" | "box", m: DecodedMask): void {
    canvas.setCurrentMask(m.mask, color());
    if (!debug.recordPreviews) return;
    let area = 0;
    for (let i = 0; i < m.mask.length; i++) area += m.mask[i] ? 1 : 0;
    debug.previews.push({ kind, decodeId: m.decodeId, refined: m.refined, area, t: performance.now() });
    if (debug.previews.length > 100) debug.previews.shift();
  }
  window.maskloop = debug;
  const canvas = new AnnotationCanvas(canvasEl);
  canvas.maskOpacity = storedOpacity();
  function setOpacity(value: number): void {
    canvas.maskOpacity = Math.min(1, Math.max(0.1, value));
    opacityEl.value = String(Math.round(canvas.maskOpacity * 100));
    localStorage.setItem(OPACITY_KEY, String(canvas.maskOpacity));
    canvas.draw();
  }
  // the canvas fills the window beside the object panel and above the key help (down to 480×360 on
  // a small screen), and follows the window when it is resized
  const fitToWindow = (): void => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("resize", onResize); return; }
    const top = canvasEl.getBoundingClientRect().top;
    const width = document.documentElement.clientWidth - 24 - 12 - ASIDE_WIDTH;
    // the key help stays in view below (its margins and the page padding: 44 px)
    const height = window.innerHeight - top - help.offsetHeight - 44;
    canvas.resize(Math.round(Math.min(2400, Math.max(480, width))), Math.round(Math.min(1600, Math.max(360, height))));
  };
  let resizeFrame = 0;
  const onResize = (): void => {
    if (!resizeFrame) resizeFrame = requestAnimationFrame(() => { resizeFrame = 0; fitToWindow(); });
  };
  window.addEventListener("resize", onResize);
  fitToWindow();
  const history = new EditHistory();
  const prefetcher = new Prefetcher(api, projectId);
  debug.prefetch = prefetcher.state;
  let project: Project;
  let labels: Label[] = [];
  let labelId = 0;
  let lease: Lease | null = null;
  let objects: ListedObject[] = [];
  let selectedProposal: string | null = null;
  let tool: Tool = "prompt";
  let brushRadius = 8;
  /** the vertices of the polygon being drawn (tool "polygon"), image coordinates */
  let polygon: Vertex[] = [];
  let startedAt: number | null = null;
  let clicks = 0;
  let modelVersionId: number | null = null;
  let ready = false;
  /** why the leased image could not be opened, with the way forward (null while it loads, or once it opened) */
  let openFailure: string | null = null;
  /** click decodes in flight: hovers wait (a preview after a click would be stale) */
  let clicking = 0;
  let spaceHeld = false;
  /** when the last object was finished (accepted, reviewed) or the image became ready: a review's seconds */
  let lastActionAt = performance.now();
  /**
   * Object-level actions (accept, delete, relabel, proposal accept/reject) of this image: once the
   * editor has nothing left to undo, Z undoes the newest of them and Shift+Z / Ctrl+Y redoes it.
   */
  interface ObjectAction { what: string; undo: () => Promise<void>; redo: () => Promise<void> }
  let done: ObjectAction[] = [];
  let undone: ObjectAction[] = [];
  const record = (a: ObjectAction): void => { done.push(a); if (done.length > 100) done.shift(); undone = []; };
  /** the proposal being fixed (F): accepting the edited mask replaces it */
  let fixing: ListedObject | null = null;
  /** the last brush/eraser position of the stroke in progress */
  let lastPaint: { x: number; y: number } | null = null;

  const color = () => parseColor(labels.find((l) => l.id === labelId)?.color ?? "#1e90ff");
  const H = () => canvas.imageHeight, W = () => canvas.imageWidth;

  function show(state: EditState): void {
    canvas.points = state.points;
    canvas.box = state.box;
    canvas.setCurrentMask(state.mask, color());
    renderCandidates(state);
  }

  function renderCandidates(state: EditState): void {
    const list = state.candidates;
    candidatesEl.hidden = !list || list.length < 2;
    if (list && list.length > 1) {
      candInfo.textContent = ` candidate ${state.candidate + 1}/${list.length} · predicted IoU ${list[state.candidate].iou.toFixed(2)} `;
    }
  }

  /** decoded masks that came before their refinement (a click's, or a first click's other candidates), by array */
  const unrefined = new WeakMap<Uint8Array, DecodedMask>();

  /**
   * When the editor's mask came unrefined, have it refined (in place) and draw it again if it is still
   * the editor's. Resolves true once refined; false when there was nothing to refine, or the editor
   * moved on before the refinement started (dropped), or it could not be done.
   */
  function refineShown(): Promise<boolean> {
    const mask = history.state.mask;
    const m = mask ? unrefined.get(mask) : undefined;
    if (!m || !decoder) return Promise.resolve(false);
    debug.refining++;
    return decoder.refineCandidate(m, () => history.state.mask === m.mask).then((ok) => {
      debug.refining--;
      if (ok) {
        unrefined.delete(m.mask);
        if (history.state.mask === m.mask) show(history.state);
      }
      return ok;
    });
  }

  /** Show the next (+1) or previous (−1) candidate of the current first click. */
  function cycle(step: number): boolean {
    const s = history.state;
    if (!s.candidates || s.candidates.length < 2) return false;
    history.replace(withCandidate(s, s.candidate + step));
    show(history.state);
    // only the best candidate comes refined; this one is refined now and redrawn when it is
    void refineShown();
    return true;
  }

  function renderStageHint(): void {
    const left = objects.filter(isProposal).length;
    const what = project?.stage === "fully_automatic" ? "Stage 3 — review the automatic masks"
      : project?.stage === "semi_automatic" ? "Stage 2 — check the prefilled masks" : left ? "Review the proposed masks" : "";
    stageHint.textContent = what ? `${what}: ${left} left on this image. A accepts, R rejects, F fixes (brush/eraser, then Enter) the highlighted one (click a row to pick another), Shift+R rejects all that are left; then annotate what is missing.` : "";
    stageHint.hidden = !what;
  }

  function renderLabels(): void {
    labelFilter.hidden = labels.length <= 10;
    const shown = new Set(filterLabels(labelFilter.value, labels).map((l) => l.id));
    mount(labelsEl, ...labels.map((l, i) => h("button", {
      class: `label${l.id === labelId ? " active" : ""}`, style: `border-color:${l.color}`, "data-label-id": l.id,
      hidden: !shown.has(l.id) && l.id !== labelId,
      onclick: () => { labelId = l.id; renderLabels(); show(history.state); canvasEl.focus(); },
    }, `${labelKey(i) ?? "·"} ${l.name}`)), h("span", { class: "tool" }, ` tool: ${tool}`));
  }
  labelFilter.addEventListener("input", () => renderLabels());
  labelFilter.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      const first = filterLabels(labelFilter.value, labels)[0];
      if (!first) { status.say(`No label matches "${labelFilter.value}".`); return; }
      labelId = first.id;
    } else if (e.key !== "Escape") return;
    e.preventDefault();
    labelFilter.value = "";
    renderLabels();
    show(history.state);
    canvasEl.focus();
  });

  /** Accept (it becomes `semi_auto_accepted`, taking the current label if it has none) or reject (delete) a proposal. */
  async function review(o: ListedObject, decision: "accept" | "reject", recordIt = true): Promise<void> {
    const seconds = Math.round((performance.now() - lastActionAt) / 100) / 10;
    lastActionAt = performance.now();
    if (decision === "accept") {
      const before = o.source;
      const patch = { source: "semi_auto_accepted", seconds, clicks: 0, ...(o.labelId === null && labelId ? { label_id: labelId } : {}) };
      o.annotation = await api.updateAnnotation(o.annotation!.id, patch);
      o.source = o.annotation.source;
      o.labelId = o.annotation.label_id;
      if (recordIt) {
        record({ what: "proposal accept",
          undo: async () => { o.annotation = await api.updateAnnotation(o.annotation!.id, { source: before }); o.source = before; selectedProposal = o.key; },
          redo: () => review(o, "accept", false) });
      }
    } else {
      await removeObject(o, "proposal reject");
    }
    selectedProposal = nextProposal(objects, o.key);
  }

  /**
   * Reject every proposal still listed for this image (Shift+R; stage 3 leaves many): one request,
   * one undo step that restores them all where they were, and a redo that rejects them again.
   */
  async function rejectRest(): Promise<void> {
    const rest = objects.filter((o) => isProposal(o) && o.annotation);
    if (!rest.length || !lease) return;
    const imageId = lease.image.id;
    const places = new Map(rest.map((o) => [o, objects.indexOf(o)]));
    const reject = async (): Promise<Rejection[]> => {
      const made = await api.rejectProposals(imageId, { annotation_ids: rest.map((o) => o.annotation!.id) });
      objects = objects.filter((o) => !places.has(o));
      selectedProposal = nextProposal(objects);
      return made;
    };
    let rejections = await reject();
    lastActionAt = performance.now();
    status.say(`Rejected the ${rest.length} proposal(s) left on this image. (Z brings them back.)`, "ok");
    record({ what: `reject ${rest.length} proposals`,
      undo: async () => {
        for (const o of [...rest].sort((a, b) => places.get(a)! - places.get(b)!)) {
          const r = rejections.find((x) => x.annotation_id === o.annotation!.id);
          if (r) putBack(o, await api.restoreRejection(r.id), places.get(o)!);
        }
        selectedProposal = nextProposal(objects);
      },
      redo: async () => { rejections = await reject(); } });
  }

  /** Put a restored proposal back in the object list, where it was. */
  function putBack(o: ListedObject, restored: Annotation, index: number): void {
    o.annotation = restored;
    o.source = restored.source;
    o.labelId = restored.label_id;
    objects = objects.filter((x) => x !== o);
    objects.splice(Math.min(index, objects.length), 0, o);
    selectedProposal = o.key;
  }

  /**
   * Reject a model proposal: the server keeps it (`/reject`), so undo restores it with its mask,
   * scores and provenance (`/rejections/{id}/restore`), and redo rejects it again.
   */
  async function rejectProposal(o: ListedObject, what: string): Promise<void> {
    const index = objects.indexOf(o);
    let rejection = await api.rejectAnnotation(o.annotation!.id);
    objects = objects.filter((x) => x !== o);
    record({ what,
      undo: async () => putBack(o, await api.restoreRejection(rejection.id), index),
      redo: async () => {
        rejection = await api.rejectAnnotation(o.annotation!.id);
        objects = objects.filter((x) => x !== o);
        selectedProposal = nextProposal(objects, o.key);
      } });
  }

  /**
   * Delete a stored object (a model proposal is rejected instead, see `rejectProposal`). Undo
   * stores it again through the outbox (same mask, label, source, clicks and seconds; a new id);
   * redo deletes that one.
   */
  async function removeObject(o: ListedObject, what: string): Promise<void> {
    if (isProposal(o)) return rejectProposal(o, what);
    const a = o.annotation!;
    await api.deleteAnnotation(a.id);
    objects = objects.filter((x) => x !== o);
    let restored: ListedObject | null = null;
    record({ what,
      undo: async () => {
        if (!lease) return;
        const uid = newClientUid();
        const seg = a.segmentation as { size: [number, number]; counts: string };
        enqueue(lease.image.id, { label_id: a.label_id ?? labelId, segmentation: seg, source: a.source, clicks: a.clicks ?? undefined,
          seconds: a.seconds ?? undefined, predicted_iou: a.predicted_iou ?? undefined, model_version_id: a.model_version_id, client_uid: uid });
        restored = makeObject(null, seg, a.label_id ?? labelId, a.source, labels, uid);
        objects.push(restored);
        await flush();
      },
      redo: async () => {
        await flush();
        const r = restored;
        if (!r) return;
        if (r.annotation) await api.deleteAnnotation(r.annotation.id);
        else if (r.pendingUid) dropFromOutbox(r.pendingUid);
        objects = objects.filter((x) => x !== r);
      } });
  }

  /** Undo (or redo) the newest object action; one that fails stays where it was, and the error is shown. */
  async function undoObject(redo = false): Promise<void> {
    const [from, to] = redo ? [undone, done] : [done, undone];
    const a = from.pop();
    if (!a) return;
    try {
      await (redo ? a.redo() : a.undo());
      to.push(a);
      status.say(redo ? `Redone: ${a.what}.` : `Undone: ${a.what}. (Shift+Z redoes it.)`, "ok");
    } catch (err) {
      from.push(a);
      report(err);
    }
    renderList();
    canvas.draw();
  }

  /** A new edit in the editor: what was undone can no longer be redone. */
  function edit(state: EditState): void {
    undone = [];
    history.push(state);
  }

  /** Switch tools; a polygon being drawn is dropped. */
  function setTool(next: Tool): void {
    tool = next;
    if (tool !== "brush" && tool !== "eraser") canvas.brushCursor = null;
    setPolygon([]);
    renderLabels();
  }

  function setPolygon(points: Vertex[]): void {
    polygon = points;
    canvas.polygon = tool === "polygon" && points.length ? { points, cursor: canvas.polygon?.cursor ?? null } : null;
    canvas.requestDraw();
  }

  /** A click of the polygon tool: a new vertex, or (on the first vertex) the polygon closed. */
  function addVertex(p: Vertex, hole: boolean): void {
    // within 8 screen pixels of the first vertex closes it, whatever the zoom
    if (closesPolygon(polygon, p, 8 / canvas.view.scale)) { closePolygon(hole); return; }
    startedAt ??= performance.now();
    clicks++;
    setPolygon([...polygon, { x: p.x, y: p.y }]);
    if (polygon.length === 1) status.say("Polygon: click the next vertices; click the first one (or Enter) to close it, Alt to cut a hole; Backspace or right click removes the last vertex, Esc cancels.");
  }

  function removeVertex(): void {
    if (polygon.length) setPolygon(polygon.slice(0, -1));
  }

  /**
   * Close the polygon being drawn: its inside is added to the editor's mask (or, as a hole, removed
   * from it) as one undoable edit; the mask is then accepted like any other (Enter).
   */
  function closePolygon(hole: boolean): void {
    if (polygon.length < 3) { status.say("A polygon needs at least three vertices."); return; }
    if (hole && !history.state.mask) { status.say("There is no mask to cut a hole in: close the polygon without Alt first."); return; }
    const mask = history.state.mask ? history.state.mask.slice() : new Uint8Array(W() * H());
    const n = fillPolygon(mask, W(), H(), polygon, hole ? 0 : 1);
    setPolygon([]);
    if (!n) { status.say("The polygon covers no pixel of the image."); return; }
    edit({ ...history.state, mask, candidates: null, candidate: 0 });
    show(history.state);
    status.say(hole ? "Hole cut from the mask. Enter accepts it." : "Polygon added to the mask. Enter accepts it; D goes back to clicking.", "ok");
  }

  function renderList(): void {
    canvas.objects = objects;
    canvas.highlight = selectedProposal;
    canvas.hovered = null; // the rows are made anew: the next pointer move over one sets it again
    canvas.requestDraw();
    renderObjects(objectsEl, objects, labels, {
      toggle: (o) => { o.visible = !o.visible; renderList(); canvas.draw(); },
      remove: (o) => void act(() => removeObject(o, "delete")),
      relabel: (o, id) => {
        if (o.refused) { o.labelId = id; return; } // taken by "retry"
        void act(async () => {
          const from = o.labelId;
          // the server's copy comes back (a relabelled mask rejected in review is pending review again)
          o.annotation = await api.updateAnnotation(o.annotation!.id, { label_id: id });
          o.labelId = id;
          if (from !== null) {
            record({ what: "relabel",
              undo: async () => { o.annotation = await api.updateAnnotation(o.annotation!.id, { label_id: from }); o.labelId = from; },
              redo: async () => { o.annotation = await api.updateAnnotation(o.annotation!.id, { label_id: id }); o.labelId = id; } });
          }
        });
      },
      retry: (o, id) => {
        if (!o.pendingUid || !retryRefused(o.pendingUid, id ?? undefined)) return;
        o.refused = null;
        if (id) o.labelId = id;
        void flush();
      },
      discard: (o) => {
        if (o.pendingUid) discardRefused(o.pendingUid);
        objects = objects.filter((x) => x !== o);
        renderList();
        canvas.draw();
      },
      accept: (o) => void act(() => review(o, "accept")),
      reject: (o) => void act(() => review(o, "reject")),
      select: (o) => { selectedProposal = o.key; renderList(); canvas.draw(); },
      hover: (o) => { canvas.hovered = o?.key ?? null; canvas.requestDraw(); },
    }, selectedProposal);
    renderStageHint();
    const pending = readOutbox().length;
    const refused = readRefused().length;
    saveEl.textContent = (pending ? `${pending} accepted mask(s) waiting to be saved — retrying` : "All accepted masks saved.")
      + (refused ? ` ${refused} refused by the server: see the object list.` : "");
  }

  async function act(fn: () => Promise<void>): Promise<void> {
    try { await fn(); } catch (err) { report(err); }
    renderList();
    canvas.draw();
  }

  function report(err: unknown): void {
    if (err instanceof ApiError && err.status === 409) status.say(`Your lease on this image was lost (${err.detail}). Press N for another image.`, "error");
    else if (lease && !ready) {
      openFailure = `${lease.image.file_name} could not be opened: ${errorText(err)}. Press S to skip it (another annotator gets it), or reload the page to try again.`;
      status.say(openFailure, "error");
    } else status.say(errorText(err), "error");
  }

  async function flush(): Promise<void> {
    const r = await flushOutbox(api);
    for (const { entry, annotation } of r.saved) {
      const o = objects.find((x) => x.pendingUid === entry.body.client_uid);
      if (o) { o.annotation = annotation; o.pendingUid = null; o.key = `a${annotation.id}`; }
    }
    for (const { entry, error } of r.rejected) {
      const o = objects.find((x) => x.pendingUid === entry.body.client_uid);
      if (o) o.refused = error;
      status.say(`The server refused an accepted mask: ${error}. It is kept in the object list: pick a label and retry, or discard it.`, "error");
    }
    if (r.lastError) status.say(`Saving failed, will retry: ${r.lastError}`, "error");
    renderList();
    canvas.draw();
  }

  async function loadImage(next: Lease): Promise<void> {
    const t0 = performance.now();
    lease = next;
    openFailure = null;
    ready = debug.ready = false;
    const image = next.image;
    debug.imageId = image.id;
    history.clearAll();
    setPolygon([]);
    show(history.state);
    objects = [];
    done = [];
    undone = [];
    fixing = null;
    canvas.clearImage();
    status.say(`Loading image ${image.file_name}…`);
    const progress = (p: EmbeddingProgress): void => {
      if (p.state === "computing") status.say(`Computing the embedding of ${image.file_name}… (${Math.round(p.waitedSeconds)} s)`);
      else if (p.state === "downloading") status.say(`Downloading the embedding of ${image.file_name}…`);
    };
    const prefetched = prefetcher.take(image.id, progress);
    let data: LoadedImage | null = null;
    if (prefetched) data = await prefetched.catch(() => null); // a failed prefetch: load it the ordinary way
    const fromPrefetch = data !== null;
    const stored = api.listAnnotations(image.id);
    data ??= await loadImageData(api, image, progress);
    const { bitmap, embedding: emb } = data;
    canvas.setImage(bitmap, bitmap.width, bitmap.height);
    objects = (await stored).map((a) => makeObject(a, a.segmentation, a.label_id, a.source, labels, null));
    for (const e of readOutbox().filter((x) => x.imageId === image.id)) {
      objects.push(makeObject(null, e.body.segmentation, e.body.label_id, e.body.source, labels, e.body.client_uid));
    }
    for (const e of readRefused().filter((x) => x.imageId === image.id)) {
      const o = makeObject(null, e.body.segmentation, e.body.label_id, e.body.source, labels, e.body.client_uid);
      o.refused = e.error;
      objects.push(o);
    }
    selectedProposal = nextProposal(objects);
    renderList();
    canvas.draw();
    const rejectedInReview = objects.filter((o) => o.annotation?.review_state === "rejected").length;
    reviewHint.hidden = !image.review_note && !rejectedInReview;
    reviewHint.textContent = `Sent back by review${image.review_note ? `: “${image.review_note}”` : "."}`
      + (rejectedInReview ? ` ${plural(rejectedInReview, "mask")} marked “rejected in review” below: fix or delete ${rejectedInReview === 1 ? "it" : "them"}.` : "");
    modelVersionId = Number(emb.header.model_version);
    if (!decoder || decoderModel !== modelVersionId) {
      status.say("Loading the decoder…");
      decoder?.terminate();
      decoder = new DecoderClient();
      const mv = await api.getModel(modelVersionId);
      await decoder.init(api.decoderUrl(modelVersionId, false), mv.has_multimask_decoder ? api.decoderUrl(modelVersionId, true) : null);
      decoderModel = modelVersionId;
      refineParams = mv.refine && mv.refine.method === "guided" ? mv.refine : null;
      if (!snap) await decoder.setRefine(false);
      snapEl.hidden = refineParams === null;
    }
    // The worker refines every decoded mask with the image's pixels (edge-aware, as the server says).
    const [oh, ow] = emb.header.orig_size;
    const sameSize = bitmap.width === ow && bitmap.height === oh;
    // at the size the worker decodes and refines masks (a large photo's pixels scaled down to it)
    const [wh, ww] = (debug.maskWorkSize = maskWorkSize(oh, ow));
    const guide = refineParams && sameSize ? { rgba: imagePixels(bitmap, ww, wh), params: refineParams } : null;
    guideSent = guide !== null;
    debug.refined = guideSent && snap;
    await decoder.setEmbedding(`${image.id}:${modelVersionId}`, emb.data, emb.header.shape, emb.header.orig_size, emb.header.input_size, guide);
    ready = debug.ready = true;
    saveVisited(withVisit(visited(), image.id));
    startedAt = null;
    clicks = 0;
    lastActionAt = performance.now();
    debug.loads.push({ imageId: image.id, prefetched: fromPrefetch, ms: performance.now() - t0 });
    status.say(`Ready: ${image.file_name} (${image.width}×${image.height}), embedding ${(emb.byteLength / 1048576).toFixed(1)} MiB${fromPrefetch ? " (prefetched)" : ""}, decoder ${decoder.threads} thread(s).`, "ok");
    canvasEl.focus();
    void prefetcher.start(image.id);
  }

  // the images this annotator opened in this project, for P (kept in this browser)
  const me = currentUser();
  const visitKey = me ? visitedKey(me.id, projectId) : null;
  const visited = (): number[] => (visitKey ? readVisited(localStorage, visitKey) : []);
  const saveVisited = (list: number[]): void => { if (visitKey) localStorage.setItem(visitKey, JSON.stringify(list)); };

  /**
   * Go back to the image opened before this one, to correct it. Its lease releases the current image
   * (back to the queue; what was accepted on it is saved); when it cannot be leased (another annotator
   * holds it) the current image stays open.
   */
  async function previousImage(): Promise<void> {
    if (history.state.mask) { status.say("Accept (Enter) or clear (Esc) the current mask first."); return; }
    const prev = previousOf(visited(), lease?.image.id ?? null);
    if (prev === null) { status.say("There is no earlier image of yours in this project to go back to."); return; }
    await flush();
    let picked: Lease;
    try {
      picked = await api.leaseImage(prev);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) saveVisited(withoutImage(visited(), prev));
      status.say(`The previous image (${prev}) cannot be opened: ${errorText(err)}.`, "error");
      return;
    }
    try {
      await loadImage(picked);
      status.say(`Back to ${picked.image.file_name} (${picked.image.status}): correct it, then N submits it and takes the next image; P goes further back.`, "ok");
    } catch (err) {
      report(err);
    }
  }

  /** Show (or hide; no argument: switch) the project's guidelines. */
  function toggleGuidelines(show?: boolean): void {
    if (guideBtn.hidden) { status.say("This project has no guidelines."); return; }
    guidePanel.hidden = !(show ?? guidePanel.hidden);
    fitToWindow();
  }

  /** Lease and open the image picked from the project's list; if that cannot be done, say why and offer the queue. */
  async function openPicked(imageId: number): Promise<void> {
    let picked: Lease;
    try {
      picked = await api.leaseImage(imageId);
    } catch (err) {
      status.say(`Image ${imageId} cannot be opened: ${errorText(err)}. Press N to take the next image of the queue instead.`, "error");
      return;
    }
    try {
      await loadImage(picked);
    } catch (err) {
      report(err);
    }
  }

  async function nextImage(): Promise<void> {
    try {
      const l = await api.next(projectId);
      if (!l) {
        lease = null;
        debug.imageId = null;
        prefetcher.cancel();
        status.say("All images in this project are done. Thank you!", "ok");
        return;
      }
      await loadImage(l);
    } catch (err) {
      report(err);
    }
  }

  /** Give the image back for another annotator (it is not offered to this user again); saved masks stay. */
  async function skipImage(): Promise<void> {
    if (history.state.mask) { status.say("Accept (Enter) or clear (Esc) the current mask first."); return; }
    await flush();
    try {
      if (lease) await api.releaseLease(lease.lease_id, true);
    } catch (err) {
      report(err);
      if (!(err instanceof ApiError && err.status === 409)) return;
    }
    await nextImage();
  }

  /** the image whose unreviewed proposals the annotator was warned of by a first N */
  let warnedUnreviewed: number | null = null;
  async function submitAndNext(): Promise<void> {
    if (history.state.mask) { status.say("Accept (Enter) or clear (Esc) the current mask first."); return; }
    // an image that never opened is not "done": skip it instead, so it stays in the queue for the others
    if (lease && !ready) { await skipImage(); return; }
    await flush();
    if (lease && readOutbox().some((e) => e.imageId === lease!.image.id)) {
      status.say("Some masks of this image are not saved yet; not submitting.", "error");
      return;
    }
    if (lease && readRefused().some((e) => e.imageId === lease!.image.id)) {
      status.say("The server refused a mask of this image: retry it (pick a label) or discard it in the object list first.", "error");
      return;
    }
    // proposals nobody looked at stay as they were stored (stage 2's pending, stage 3's kept): the
    // first N says so, a second N on the same image submits anyway
    const left = objects.filter(isProposal).length;
    if (lease && left && warnedUnreviewed !== lease.image.id) {
      warnedUnreviewed = lease.image.id;
      status.say(`${left} proposal${left === 1 ? " is" : "s are"} not reviewed on this image (A accepts, R rejects, `
        + "Shift+R rejects all that are left). N again submits the image and leaves them as they are.", "error");
      return;
    }
    const held = lease;
    try {
      if (held) await api.submitLease(held.lease_id);
    } catch (err) {
      report(err);
      if (!(err instanceof ApiError && err.status === 409) || !held) return;
      // the lease was lost (expired, released, or the image taken by someone else): the next image
      // opens, and the status keeps saying that this one was not submitted
      await nextImage();
      status.say(`Your lease on ${held.image.file_name} was lost (${err.detail}), so it was not submitted; your saved masks `
        + `on it are kept. ${status.textContent ?? ""}`, "error");
      return;
    }
    await nextImage();
  }

  /**
   * Decode `state`'s prompt and make the result current. A lone first click is ambiguous: it is
   * decoded with the multimask decoder and its three candidates are kept, best predicted IoU first.
   */
  async function runDecode(state: EditState, eventTime: number): Promise<void> {
    if (!decoder || !ready) return;
    const prompt: Prompt = { points: state.points, box: state.box };
    const ambiguous = state.points.length === 1 && !state.box && !state.lowRes;
    // the decoder's mask is drawn as soon as it is decoded, and again once refined with the image
    const r = await decoder.decode(prompt, state.lowRes, ambiguous, true);
    const ranked = sortByIou(r.masks);
    for (const m of ranked) if (!m.refined) unrefined.set(m.mask, m);
    const candidates = ambiguous && ranked.length > 1 ? ranked : null;
    edit(withCandidate({ ...state, points: r.prompt.points, mask: ranked[0].mask, lowRes: ranked[0].lowRes, iou: ranked[0].iou, candidates, candidate: 0 }, 0));
    show(history.state);
    const ms = performance.now() - eventTime;
    let refinedMs: number | null = ranked[0].refined && debug.refined ? ms : null;
    let refineMs = r.timings.refine || ranked[0].refineMs || 0;
    if (!ranked[0].refined && await refineShown()) {
      refinedMs = performance.now() - eventTime;
      refineMs = ranked[0].refineMs ?? decoder.lastRefineMs;
    }
    debug.decodes++;
    debug.lastClick = { ms, refinedMs, reused: r.reused, decoderMs: r.timings.run, refineMs };
    timing.textContent = `click → mask ${ms.toFixed(0)} ms${r.reused ? " (answered by the hover preview's decode)" : ""}`
      + (refinedMs !== null && refinedMs > ms + 0.5 ? `, snapped to the image at ${refinedMs.toFixed(0)} ms` : "")
      + `; decoder run ${r.timings.run.toFixed(0)} ms` + (refineMs ? `, edge refinement ${refineMs.toFixed(0)} ms` : "");
  }

  /** Snap masks to the image or not, from the next decode on (the shown mask stays as it is). */
  async function setSnap(on: boolean): Promise<void> {
    snap = on;
    snapBox.checked = on;
    localStorage.setItem(SNAP_KEY, on ? "on" : "off");
    if (decoder) await decoder.setRefine(on);
    debug.refined = guideSent && on;
    status.say(on ? "Snapping to the image: the next masks follow the image's colours and edges."
      : "Snapping is off: the next masks are the model's own.", "ok");
  }

  async function addPrompt(point: PromptPoint | null, box: Prompt["box"], eventTime: number): Promise<void> {
    // a click on the image left on screen by a failed load: the failure and its way forward again, not "wait"
    if (!ready) { status.say(openFailure ?? "Wait for the image to be ready.", openFailure ? "error" : "info"); return; }
    if (!labelId) { status.say("This project has no labels; an admin must add one."); return; }
    startedAt ??= performance.now();
    clicks++;
    const s = history.state;
    const next: EditState = { ...s, points: point ? [...s.points, point] : s.points, box: box ?? s.box, candidates: null, candidate: 0 };
    clicking++;
    try { await runDecode(next, eventTime); } catch (err) { status.say(`Decoding failed: ${errorText(err)}`, "error"); } finally { clicking--; }
  }

  /** counts hovers, so that a decode made ahead for an old pointer position does not queue another */
  let hoverSeq = 0;

  /** A dragged box from corner to corner, ordered and clamped to the image. */
  function clampBox(b: { x0: number; y0: number; x1: number; y1: number }): NonNullable<Prompt["box"]> {
    return { x0: Math.max(0, Math.min(b.x0, b.x1)), y0: Math.max(0, Math.min(b.y0, b.y1)), x1: Math.min(W(), Math.max(b.x0, b.x1)), y1: Math.min(H(), Math.max(b.y0, b.y1)) };
  }

  /**
   * While a box is dragged, decode it where the pointer pauses (the decoder's hover rules) and show
   * the mask under the box; releasing the drag there reuses that decode (DecoderClient.decode).
   */
  async function previewBox(box: NonNullable<Prompt["box"]>): Promise<void> {
    const s = history.state;
    if (!decoder || !ready || clicking) return;
    const seq = ++hoverSeq;
    // the decoder's mask while the box is dragged, refined when the pointer pauses there long enough
    const r = await decoder.decodeLatest({ points: s.points, box }, s.lowRes, false, true);
    const still = (): boolean => seq === hoverSeq && canvas.dragBox !== null && history.state === s;
    if (!r || !still()) return;
    const best = sortByIou(r.masks)[0];
    drawPreview("box", best);
    debug.boxPreviews++;
    if (!best.refined && await decoder.refineCandidate(best, still) && still()) drawPreview("box", best);
  }

  async function hover(p: { x: number; y: number }): Promise<void> {
    const seq = ++hoverSeq;
    const s = history.state;
    if (decoder && ready && !clicking && tool === "prompt" && (s.points.length || s.box)) {
      debug.ahead += await decoder.decodeAhead(s, p, W(), () => seq === hoverSeq && !clicking && history.state === s && tool === "prompt", true);
      return;
    }
    const idle = (): boolean => !clicking && !history.state.points.length && !history.state.box && tool === "prompt";
    if (!decoder || !ready || !idle()) return;
    // the multimask decoder, like a first click, so that a click on this point can reuse the result;
    // the decoder's mask is drawn first, then refined while the pointer stays there (a click on the
    // point reuses both: the decode, and the refinement done or under way)
    const r: DecodeResult | null = await decoder.decodeLatest({ points: [{ x: p.x, y: p.y, label: 1 }], box: null }, null, true, true);
    if (!r || !idle()) return;
    const best = sortByIou(r.masks)[0];
    drawPreview("hover", best);
    if (!best.refined && await decoder.refineCandidate(best, () => seq === hoverSeq && idle()) && seq === hoverSeq && idle()) {
      drawPreview("hover", best);
    }
  }

  /** an accept waiting for its mask's refinement (a second Enter meanwhile does nothing) */
  let accepting = false;
  /** Accept the editor's mask as shown refined: a mask still being refined is accepted once it is. */
  async function accept(): Promise<void> {
    if (accepting) return;
    const mask = history.state.mask;
    const m = mask ? unrefined.get(mask) : undefined;
    if (m && decoder) {
      accepting = true;
      try {
        if (await decoder.refineCandidate(m)) unrefined.delete(m.mask);
      } finally {
        accepting = false;
      }
      if (history.state.mask !== mask) { status.say("The mask changed before it was accepted; Enter accepts the new one."); return; }
      show(history.state);
    }
    acceptCurrent(true);
  }

  type Accepted = { obj: ListedObject; state: EditState; fixed: { o: ListedObject; index: number; rejection: Promise<Rejection> } | null };

  /** Accept the editor's mask; `recordIt` false when a redo accepts it again (the action exists). */
  function acceptCurrent(recordIt: boolean): Accepted | null {
    const s = history.state;
    if (!s.mask || !lease || !s.mask.some((v) => v)) { status.say("Nothing to accept: click on an object first."); return null; }
    const fixed = fixing;
    fixing = null;
    const rle: Rle = encodeRle(s.mask, H(), W());
    const uid = newClientUid();
    // drawn by hand alone (polygon, brush), with no prompt for the model and not a proposal's fix: manual
    const source = fixed || s.points.length || s.box || s.lowRes ? "assisted" as const : "manual" as const;
    const body = {
      label_id: labelId, segmentation: rle, source, clicks,
      seconds: startedAt === null ? 0 : Math.round((performance.now() - startedAt) / 100) / 10,
      model_version_id: modelVersionId, predicted_iou: s.iou ?? undefined, client_uid: uid,
    };
    enqueue(lease.image.id, body);
    const obj = makeObject(null, rle, labelId, source, labels, uid);
    objects.push(obj);
    debug.lastAccepted = rle;
    // a fixed proposal is rejected (the server keeps it) and the edited mask replaces it
    let replaced: Accepted["fixed"] = null;
    if (fixed?.annotation) {
      replaced = { o: fixed, index: objects.indexOf(fixed), rejection: api.rejectAnnotation(fixed.annotation.id) };
      objects = objects.filter((x) => x !== fixed);
      selectedProposal = nextProposal(objects, null);
      const pending = replaced.rejection;
      void act(async () => { await pending; });
    }
    const accepted: Accepted = { obj, state: s, fixed: replaced };
    if (recordIt) {
      let current = accepted;
      record({ what: fixed ? "fix" : "accept",
        undo: async () => {
          await undoAccept(current.obj, current.state);
          const f = current.fixed;
          if (!f) return;
          // the proposal comes back and the edited mask is in the editor again: Enter replaces it anew
          putBack(f.o, await api.restoreRejection((await f.rejection).id), f.index);
          fixing = f.o;
          setTool("brush");
        },
        redo: async () => {
          const again = acceptCurrent(false);
          if (!again) throw new Error("nothing in the editor to accept again");
          current = again;
        } });
    }
    // the accepted mask leaves the editor's history: Z now undoes the accept itself (undoAccept)
    history.clearAll();
    show(history.state);
    startedAt = null;
    clicks = 0;
    lastActionAt = performance.now();
    status.say(fixed ? "Fixed mask accepted; it replaces the proposal. (Z undoes the fix.)" : "Accepted. (Z undoes the accept.)", "ok");
    if (fixed) setTool("prompt");
    void flush();
    return accepted;
  }

  /** Undo an accept: the object leaves the list (and the server) and its mask is back in the editor. */
  async function undoAccept(obj: ListedObject, state: EditState): Promise<void> {
    await flush(); // an entry being sent right now is either saved (then deleted below) or still queued
    if (obj.annotation) await api.deleteAnnotation(obj.annotation.id);
    else if (obj.pendingUid) dropFromOutbox(obj.pendingUid);
    objects = objects.filter((x) => x !== obj);
    history.clearAll();
    history.push(state);
    show(history.state);
  }

  /** Load the highlighted proposal into the editor for brush/eraser touch-up; Enter replaces it. */
  function fixProposal(o: ListedObject): void {
    if (!o.annotation || !lease) return;
    if (history.state.mask) { status.say("Accept (Enter) or clear (Esc) the current mask first."); return; }
    const seg = o.annotation.segmentation as { size: [number, number]; counts: string };
    const mask = decodeRle(seg);
    fixing = o;
    if (o.labelId) { labelId = o.labelId; renderLabels(); }
    edit({ points: [], box: null, mask, lowRes: null, iou: null, candidates: null, candidate: 0 });
    show(history.state);
    startedAt = performance.now();
    clicks = 0;
    setTool("brush");
    status.say("Fixing the proposal: brush (B) adds, eraser (E) removes; Enter accepts the fixed mask, Esc cancels.", "ok");
  }

  debug.currentRle = () => (history.state.mask ? encodeRle(history.state.mask, H(), W()) : null);
  debug.candidates = () => {
    const s = history.state;
    if (!s.candidates) return null;
    return { index: s.candidate, ious: s.candidates.map((c) => c.iou), rles: s.candidates.map((c) => encodeRle(c.mask, H(), W())),
      refined: s.candidates.map((c) => c.refined) };
  };

  // mouse: left click = point, drag = box; Space+drag or middle-drag = pan; wheel = zoom
  let down: { x: number; y: number; cx: number; cy: number; button: number; pan: boolean } | null = null;
  const setCursor = (): void => { canvasEl.style.cursor = down?.pan ? "grabbing" : spaceHeld ? "grab" : ""; };
  canvasEl.addEventListener("contextmenu", (e) => e.preventDefault());
  canvasEl.addEventListener("mousedown", (e) => {
    const p = canvas.eventToImage(e);
    const pan = e.button === 1 || (spaceHeld && e.button === 0);
    if (pan) e.preventDefault(); // no middle-click autoscroll
    down = { ...p, cx: e.clientX, cy: e.clientY, button: e.button, pan };
    setCursor();
    if (!pan && tool === "polygon" && ready && canvas.inside(p)) {
      if (e.button === 2) removeVertex();
      else if (e.button === 0) addVertex(p, e.altKey);
      return;
    }
    if (!pan && (tool === "brush" || tool === "eraser") && e.button === 0 && ready && (history.state.mask || tool === "brush")) {
      const mask = history.state.mask ? history.state.mask.slice() : new Uint8Array(W() * H());
      edit({ ...history.state, mask, candidates: null, candidate: 0 });
      startedAt ??= performance.now();
      lastPaint = p;
      paintStroke(mask, W(), H(), p.x, p.y, p.x, p.y, brushRadius, tool === "brush" ? 1 : 0);
      show(history.state);
    }
  });
  canvasEl.addEventListener("mousemove", (e) => {
    const p = canvas.eventToImage(e);
    if (tool === "brush" || tool === "eraser") { canvas.brushCursor = { ...p, r: brushRadius }; canvas.requestDraw(); }
    if (tool === "polygon" && canvas.polygon) { canvas.polygon.cursor = p; canvas.requestDraw(); }
    if (down?.pan) {
      const r = canvasEl.getBoundingClientRect();
      canvas.view.pan(((e.clientX - down.cx) * canvasEl.width) / r.width, ((e.clientY - down.cy) * canvasEl.height) / r.height);
      down.cx = e.clientX;
      down.cy = e.clientY;
      canvas.requestDraw();
      return;
    }
    if (down && down.button === 0 && tool !== "prompt" && history.state.mask && lastPaint) {
      paintStroke(history.state.mask, W(), H(), lastPaint.x, lastPaint.y, p.x, p.y, brushRadius, tool === "brush" ? 1 : 0);
      lastPaint = p;
      show(history.state);
      return;
    }
    // a drag is a box only for the prompt tool (the other tools paint, or place vertices, or do nothing)
    if (down && down.button === 0 && tool === "prompt" && Math.hypot(e.clientX - down.cx, e.clientY - down.cy) > 6) {
      canvas.dragBox = { x0: down.x, y0: down.y, x1: p.x, y1: p.y };
      canvas.requestDraw();
      void previewBox(clampBox(canvas.dragBox));
      return;
    }
    if (!down && !spaceHeld && canvas.inside(p)) void hover(p);
  });
  // on the window, not the canvas: a drag released outside the canvas must still end (a box drawn
  // to the image border), or the stale box would turn the next click into that box
  const onMouseUp = (e: MouseEvent): void => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("mouseup", onMouseUp); return; }
    const start = down;
    down = null;
    lastPaint = null;
    if (!start) return;
    setCursor();
    if (!start || start.pan || tool !== "prompt") return;
    const p = canvas.eventToImage(e);
    if (canvas.dragBox) {
      // from where the drag began to where it ended (possibly outside the canvas), clamped below
      canvas.dragBox = null;
      void addPrompt(null, clampBox({ x0: start.x, y0: start.y, x1: p.x, y1: p.y }), e.timeStamp);
      return;
    }
    if (!canvas.inside(p) || start.button === 1) return;
    const negative = start.button === 2 || e.altKey;
    void addPrompt({ x: p.x, y: p.y, label: negative ? 0 : 1 }, null, e.timeStamp);
  };
  window.addEventListener("mouseup", onMouseUp);
  canvasEl.addEventListener("mouseleave", () => { canvas.brushCursor = null; if (!down) show(history.state); });
  canvasEl.addEventListener("wheel", (e) => { e.preventDefault(); canvas.wheelZoom(e); }, { passive: false });

  // keyboard
  const typing = (e: KeyboardEvent): boolean => ["INPUT", "SELECT", "TEXTAREA"].includes((e.target as HTMLElement).tagName);
  const onKeyUp = (e: KeyboardEvent) => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("keyup", onKeyUp); return; }
    if (e.key === " ") { spaceHeld = false; setCursor(); }
  };
  const onKey = (e: KeyboardEvent) => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("keydown", onKey); return; }
    if (typing(e)) return;
    const k = e.key.toLowerCase();
    const ctrl = e.ctrlKey || e.metaKey;
    const keyLabel = ctrl ? null : labelForKey(e.key, labels);
    if (e.key === " ") { spaceHeld = true; setCursor(); }
    else if (e.key === "Tab") { if (!cycle(e.shiftKey ? -1 : 1)) return; }
    else if (keyLabel) { labelId = keyLabel.id; renderLabels(); show(history.state); }
    else if (k === "l" && !ctrl && !labelFilter.hidden) labelFilter.focus();
    else if (tool === "polygon" && polygon.length && (e.key === "Enter" || e.key === "Escape" || e.key === "Backspace" || (k === "z" && !e.shiftKey))) {
      if (e.key === "Enter") closePolygon(e.altKey);
      else if (e.key === "Escape") { setPolygon([]); status.say("Polygon cancelled."); }
      else removeVertex();
      e.preventDefault();
    }
    else if (e.key === "Enter") void accept();
    else if (e.key === "Escape") { history.reset(); show(history.state); startedAt = null; clicks = 0; if (fixing) { fixing = null; status.say("Fix cancelled; the proposal is unchanged."); } }
    else if ((k === "z" && (e.shiftKey)) || (k === "y" && ctrl)) { if (history.redo()) { show(history.state); void refineShown(); } else void undoObject(true); }
    else if (k === "z") { if (history.undo()) { show(history.state); void refineShown(); } else void undoObject(); }
    else if ((k === "b" || k === "e" || k === "d") && !ctrl) {
      const wanted: Tool = k === "b" ? "brush" : k === "e" ? "eraser" : "polygon";
      setTool(tool === wanted ? "prompt" : wanted);
    }
    else if (e.key === "[" || e.key === "]") brushRadius = Math.max(1, brushRadius * (e.key === "]" ? 1.25 : 0.8));
    else if (k === "g" && !ctrl && !snapEl.hidden) void setSnap(!snap);
    else if (k === "h" && !ctrl) {
      canvas.masksHidden = !canvas.masksHidden;
      canvas.draw();
      status.say(canvas.masksHidden ? "Masks hidden: the image alone. H shows them again." : "Masks shown.");
    }
    else if (k === "o" && !ctrl) {
      // 100 → 60 → 30 → 100 %
      setOpacity(canvas.maskOpacity > 0.8 ? 0.6 : canvas.maskOpacity > 0.45 ? 0.3 : 1);
      status.say(`Masks at ${Math.round(canvas.maskOpacity * 100)} % opacity (O changes it).`);
    }
    else if (e.key === "?") toggleGuidelines();
    else if (k === "n") void submitAndNext();
    else if (k === "p" && !ctrl) void previousImage();
    else if (k === "s" && !ctrl) void skipImage();
    else if (k === "r" && e.shiftKey && !ctrl && selectedProposal) void act(rejectRest);
    else if ((k === "a" || k === "r" || k === "f") && selectedProposal) {
      const o = objects.find((x) => x.key === selectedProposal);
      if (o && k === "f") fixProposal(o);
      else if (o) void act(() => review(o, k === "a" ? "accept" : "reject"));
    } else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", () => { spaceHeld = false; setCursor(); });

  try {
    project = await api.getProject(projectId);
    labels = project.labels;
    const guide = project.instructions ?? "";
    guideText.textContent = guide;
    guideBtn.hidden = !guide;
    if (guide) {
      // opened by itself once per version of the text in this browser
      const seenKey = `maskloop.guidelinesSeen.${projectId}`;
      const version = `${guide.length}:${guideHash(guide)}`;
      if (localStorage.getItem(seenKey) !== version) { toggleGuidelines(true); localStorage.setItem(seenKey, version); }
    }
    labelId = labels[0]?.id ?? 0;
    renderLabels();
    await flush();
    if (pickedImage !== null) {
      // the address goes back to the queue's, so a reload later does not reopen this image
      window.history.replaceState(null, "", `/annotate/${projectId}`);
      await openPicked(pickedImage);
    } else {
      await nextImage();
    }
  } catch (err) {
    report(err);
  }
  let ticks = 0;
  const timer = setInterval(() => {
    if (!document.body.contains(canvasEl)) { clearInterval(timer); return; }
    if (readOutbox().length) void flush();
    // keep the lease alive while the page is open (leases last minutes; renew every 2 minutes)
    if (++ticks % 24 === 0 && lease) {
      const held = lease;
      api.renewLease(held.lease_id).then((l) => { if (lease === held) lease = l; }).catch(report);
    }
  }, 5000);
}
