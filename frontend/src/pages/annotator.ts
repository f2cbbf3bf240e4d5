/**
 * The annotator page: lease the next image, load its embedding, and turn clicks/boxes into masks
 * with the in-browser decoder; accept with a label (Enter), clear (Esc), undo/redo, brush/eraser,
 * submit and go on (N). Accepted masks go through the autosave outbox.
 */
import { ApiError } from "../api/client";
import type { Label, Lease, Project } from "../api/types";
import { AnnotationCanvas } from "../canvas/canvas";
import { DecoderClient } from "../decoder/client";
import { parseColor } from "../decoder/masks";
import type { Prompt, PromptPoint } from "../decoder/protocol";
import { errorText, h, mount, statusLine } from "../dom";
import { fetchEmbedding } from "../embedding";
import { encodeRle } from "../rle";
import { api } from "../session";
import { EditHistory, paintDisk, type EditState } from "../annotator/history";
import { makeObject, renderObjects, type ListedObject } from "../annotator/objects";
import { enqueue, flushOutbox, newClientUid, readOutbox } from "../annotator/outbox";

type Tool = "prompt" | "brush" | "eraser";

/** Exposed for tests and debugging: what the page last drew and accepted. */
export interface AnnotatorDebug { imageId: number | null; ready: boolean; decodes: number; currentRle: () => { size: [number, number]; counts: string } | null; lastAccepted: { size: [number, number]; counts: string } | null }
declare global { interface Window { maskloop?: AnnotatorDebug } }

let decoder: DecoderClient | null = null;
let decoderModel = -1;

export async function annotatorPage(root: HTMLElement, projectId: number, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  const canvasEl = h("canvas", { id: "stage", width: 960, height: 680, tabindex: 0 });
  const objectsEl = h("div", { id: "objects" });
  const labelsEl = h("div", { id: "labels" });
  const saveEl = h("p", { id: "autosave" });
  const timing = h("p", { id: "timing", class: "help" });
  const help = h("p", { class: "help" }, "Click: add point · right/Alt+click: negative · drag: box · 1–9: label · Enter: accept · Esc: clear · Z/Ctrl+Z undo · Ctrl+Y/Shift+Z redo · B/E brush/eraser ([ ] size) · A/R accept/reject proposal · wheel zoom · middle-drag pan · N: submit & next");
  const nextBtn = h("button", { id: "next", onclick: () => void submitAndNext() }, "Next image (N)");
  mount(root, h("div", { class: "annotator" },
    h("div", { class: "toolbar" }, h("button", { onclick: () => go("/projects") }, "← Projects"), nextBtn, labelsEl, status),
    h("div", { class: "work" }, canvasEl, h("aside", {}, objectsEl, saveEl, timing)), help));

  const debug: AnnotatorDebug = { imageId: null, ready: false, decodes: 0, currentRle: () => null, lastAccepted: null };
  window.maskloop = debug;
  const canvas = new AnnotationCanvas(canvasEl);
  const history = new EditHistory();
  let project: Project;
  let labels: Label[] = [];
  let labelId = 0;
  let lease: Lease | null = null;
  let objects: ListedObject[] = [];
  let selectedProposal: string | null = null;
  let tool: Tool = "prompt";
  let brushRadius = 8;
  let startedAt: number | null = null;
  let clicks = 0;
  let modelVersionId: number | null = null;
  let ready = false;

  const color = () => parseColor(labels.find((l) => l.id === labelId)?.color ?? "#1e90ff");
  const H = () => canvas.imageHeight, W = () => canvas.imageWidth;

  function show(state: EditState): void {
    canvas.points = state.points;
    canvas.box = state.box;
    canvas.setCurrentMask(state.mask, color());
  }

  function renderLabels(): void {
    mount(labelsEl, ...labels.map((l, i) => h("button", {
      class: `label${l.id === labelId ? " active" : ""}`, style: `border-color:${l.color}`, "data-label-id": l.id,
      onclick: () => { labelId = l.id; renderLabels(); show(history.state); canvasEl.focus(); },
    }, `${i + 1} ${l.name}`)), h("span", { class: "tool" }, ` tool: ${tool}`));
  }

  function renderList(): void {
    canvas.objects = objects;
    renderObjects(objectsEl, objects, labels, {
      toggle: (o) => { o.visible = !o.visible; renderList(); canvas.draw(); },
      remove: (o) => void act(async () => { await api.deleteAnnotation(o.annotation!.id); objects = objects.filter((x) => x !== o); }),
      relabel: (o, id) => void act(async () => { await api.updateAnnotation(o.annotation!.id, { label_id: id }); o.labelId = id; }),
      accept: (o) => void act(async () => { o.annotation = await api.updateAnnotation(o.annotation!.id, { source: "semi_auto_accepted" }); o.source = o.annotation.source; }),
      reject: (o) => void act(async () => { await api.deleteAnnotation(o.annotation!.id); objects = objects.filter((x) => x !== o); }),
    }, selectedProposal);
    const pending = readOutbox().length;
    saveEl.textContent = pending ? `${pending} accepted mask(s) waiting to be saved — retrying` : "All accepted masks saved.";
  }

  async function act(fn: () => Promise<void>): Promise<void> {
    try { await fn(); } catch (err) { report(err); }
    renderList();
    canvas.draw();
  }

  function report(err: unknown): void {
    if (err instanceof ApiError && err.status === 409) status.say(`Your lease on this image was lost (${err.detail}). Press N for another image.`, "error");
    else status.say(errorText(err), "error");
  }

  async function flush(): Promise<void> {
    const r = await flushOutbox(api);
    for (const { entry, annotation } of r.saved) {
      const o = objects.find((x) => x.pendingUid === entry.body.client_uid);
      if (o) { o.annotation = annotation; o.pendingUid = null; o.key = `a${annotation.id}`; }
    }
    for (const { entry, error } of r.rejected) {
      objects = objects.filter((x) => x.pendingUid !== entry.body.client_uid);
      status.say(`The server refused an accepted mask: ${error}`, "error");
    }
    if (r.lastError) status.say(`Saving failed, will retry: ${r.lastError}`, "error");
    renderList();
    canvas.draw();
  }

  async function loadImage(next: Lease): Promise<void> {
    lease = next;
    ready = debug.ready = false;
    const image = next.image;
    debug.imageId = image.id;
    history.clearAll();
    objects = [];
    status.say(`Loading image ${image.file_name}…`);
    const blob = await api.imageBlob(image.id);
    const bitmap = await createImageBitmap(blob);
    canvas.setImage(bitmap, bitmap.width, bitmap.height);
    const stored = await api.listAnnotations(image.id);
    objects = stored.map((a) => makeObject(a, a.segmentation, a.label_id, a.source, labels, null));
    for (const e of readOutbox().filter((x) => x.imageId === image.id)) {
      objects.push(makeObject(null, e.body.segmentation, e.body.label_id, e.body.source, labels, e.body.client_uid));
    }
    selectedProposal = objects.find((o) => o.source === "semi_auto")?.key ?? null;
    renderList();
    const emb = await fetchEmbedding(api, image.id, {
      onProgress: (p) => {
        if (p.state === "computing") status.say(`Computing the embedding… (${Math.round(p.waitedSeconds)} s)`);
        else if (p.state === "downloading") status.say("Downloading the embedding…");
      },
    });
    modelVersionId = Number(emb.header.model_version);
    if (!decoder || decoderModel !== modelVersionId) {
      status.say("Loading the decoder…");
      decoder?.terminate();
      decoder = new DecoderClient();
      const mv = await api.getModel(modelVersionId);
      await decoder.init(api.decoderUrl(modelVersionId, false), mv.has_multimask_decoder ? api.decoderUrl(modelVersionId, true) : null);
      decoderModel = modelVersionId;
    }
    await decoder.setEmbedding(`${image.id}:${modelVersionId}`, emb.data, emb.header.shape, emb.header.orig_size, emb.header.input_size);
    ready = debug.ready = true;
    startedAt = null;
    clicks = 0;
    status.say(`Ready: ${image.file_name} (${image.width}×${image.height}), embedding ${(emb.byteLength / 1048576).toFixed(1)} MiB, decoder ${decoder.threads} thread(s).`, "ok");
    canvasEl.focus();
  }

  async function nextImage(): Promise<void> {
    try {
      const l = await api.next(projectId);
      if (!l) {
        lease = null;
        debug.imageId = null;
        status.say("All images in this project are done. Thank you!", "ok");
        return;
      }
      await loadImage(l);
    } catch (err) {
      report(err);
    }
  }

  async function submitAndNext(): Promise<void> {
    if (history.state.mask) { status.say("Accept (Enter) or clear (Esc) the current mask first."); return; }
    await flush();
    if (lease && readOutbox().some((e) => e.imageId === lease!.image.id)) {
      status.say("Some masks of this image are not saved yet; not submitting.", "error");
      return;
    }
    try {
      if (lease) await api.submitLease(lease.lease_id);
    } catch (err) {
      report(err);
      if (!(err instanceof ApiError && err.status === 409)) return;
    }
    await nextImage();
  }

  async function runDecode(state: EditState): Promise<void> {
    if (!decoder || !ready) return;
    const prompt: Prompt = { points: state.points, box: state.box };
    const r = await decoder.decode(prompt, state.lowRes);
    debug.decodes++;
    timing.textContent = `decoder ${r.ms.toFixed(0)} ms`;
    const best = r.masks.reduce((a, b) => (b.iou > a.iou ? b : a));
    history.push({ ...state, mask: best.mask, lowRes: best.lowRes, iou: best.iou });
    show(history.state);
  }

  async function addPrompt(point: PromptPoint | null, box: Prompt["box"] = null): Promise<void> {
    if (!ready) { status.say("Wait for the image to be ready."); return; }
    if (!labelId) { status.say("This project has no labels; an admin must add one."); return; }
    startedAt ??= performance.now();
    clicks++;
    const s = history.state;
    const next: EditState = { ...s, points: point ? [...s.points, point] : s.points, box: box ?? s.box };
    try { await runDecode(next); } catch (err) { status.say(`Decoding failed: ${errorText(err)}`, "error"); }
  }

  async function hover(p: { x: number; y: number }): Promise<void> {
    const s = history.state;
    if (!decoder || !ready || s.points.length || s.box || tool !== "prompt") return;
    const r = await decoder.decodeLatest({ points: [{ x: p.x, y: p.y, label: 1 }], box: null }, null);
    if (!r || history.state.points.length || history.state.box) return;
    canvas.setCurrentMask(r.masks[0].mask, color());
  }

  function accept(): void {
    const s = history.state;
    if (!s.mask || !lease || !s.mask.some((v) => v)) { status.say("Nothing to accept: click on an object first."); return; }
    const rle = encodeRle(s.mask, H(), W());
    const uid = newClientUid();
    const body = {
      label_id: labelId, segmentation: rle, source: "assisted" as const, clicks,
      seconds: startedAt === null ? 0 : Math.round((performance.now() - startedAt) / 100) / 10,
      model_version_id: modelVersionId, predicted_iou: s.iou ?? undefined, client_uid: uid,
    };
    enqueue(lease.image.id, body);
    objects.push(makeObject(null, rle, labelId, "assisted", labels, uid));
    debug.lastAccepted = rle;
    history.reset();
    show(history.state);
    startedAt = null;
    clicks = 0;
    status.say("Accepted.", "ok");
    void flush();
  }

  debug.currentRle = () => (history.state.mask ? encodeRle(history.state.mask, H(), W()) : null);

  // mouse
  let down: { x: number; y: number; cx: number; cy: number; button: number } | null = null;
  canvasEl.addEventListener("contextmenu", (e) => e.preventDefault());
  canvasEl.addEventListener("mousedown", (e) => {
    const p = canvas.eventToImage(e);
    down = { ...p, cx: e.clientX, cy: e.clientY, button: e.button };
    if ((tool === "brush" || tool === "eraser") && e.button === 0 && history.state.mask) {
      history.push({ ...history.state, mask: history.state.mask.slice() });
      paintDisk(history.state.mask!, W(), H(), p.x, p.y, brushRadius, tool === "brush" ? 1 : 0);
      show(history.state);
    }
  });
  canvasEl.addEventListener("mousemove", (e) => {
    const p = canvas.eventToImage(e);
    if (tool !== "prompt") { canvas.brushCursor = { ...p, r: brushRadius }; canvas.requestDraw(); }
    if (down?.button === 1) { canvas.view.pan(e.clientX - down.cx, e.clientY - down.cy); down.cx = e.clientX; down.cy = e.clientY; canvas.requestDraw(); return; }
    if (down && down.button === 0 && tool !== "prompt" && history.state.mask) {
      paintDisk(history.state.mask, W(), H(), p.x, p.y, brushRadius, tool === "brush" ? 1 : 0);
      show(history.state);
      return;
    }
    if (down && down.button === 0 && Math.hypot(e.clientX - down.cx, e.clientY - down.cy) > 6) {
      canvas.dragBox = { x0: down.x, y0: down.y, x1: p.x, y1: p.y };
      canvas.requestDraw();
      return;
    }
    if (!down && canvas.inside(p)) void hover(p);
  });
  canvasEl.addEventListener("mouseup", (e) => {
    const start = down;
    down = null;
    if (!start || tool !== "prompt") return;
    const p = canvas.eventToImage(e);
    if (canvas.dragBox) {
      const b = canvas.dragBox;
      canvas.dragBox = null;
      void addPrompt(null, { x0: Math.max(0, Math.min(b.x0, b.x1)), y0: Math.max(0, Math.min(b.y0, b.y1)), x1: Math.min(W(), Math.max(b.x0, b.x1)), y1: Math.min(H(), Math.max(b.y0, b.y1)) });
      return;
    }
    if (!canvas.inside(p) || start.button === 1) return;
    const negative = start.button === 2 || e.altKey;
    void addPrompt({ x: p.x, y: p.y, label: negative ? 0 : 1 });
  });
  canvasEl.addEventListener("mouseleave", () => { canvas.brushCursor = null; if (!down) show(history.state); });
  canvasEl.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = canvasEl.getBoundingClientRect();
    canvas.view.zoomAt(((e.clientX - r.left) * canvasEl.width) / r.width, ((e.clientY - r.top) * canvasEl.height) / r.height, e.deltaY < 0 ? 1.15 : 1 / 1.15);
    canvas.requestDraw();
  }, { passive: false });

  // keyboard
  const onKey = (e: KeyboardEvent) => {
    if (!document.body.contains(canvasEl)) { window.removeEventListener("keydown", onKey); return; }
    if ((e.target as HTMLElement).tagName === "INPUT" || (e.target as HTMLElement).tagName === "SELECT") return;
    const k = e.key.toLowerCase();
    const ctrl = e.ctrlKey || e.metaKey;
    if (/^[1-9]$/.test(e.key) && labels[Number(e.key) - 1]) { labelId = labels[Number(e.key) - 1].id; renderLabels(); show(history.state); }
    else if (e.key === "Enter") accept();
    else if (e.key === "Escape") { history.reset(); show(history.state); startedAt = null; clicks = 0; }
    else if ((k === "z" && (e.shiftKey)) || (k === "y" && ctrl)) { if (history.redo()) show(history.state); }
    else if (k === "z") { if (history.undo()) show(history.state); }
    else if (k === "b" || k === "e") { tool = tool === (k === "b" ? "brush" : "eraser") ? "prompt" : k === "b" ? "brush" : "eraser"; renderLabels(); }
    else if (e.key === "[" || e.key === "]") brushRadius = Math.max(1, brushRadius * (e.key === "]" ? 1.25 : 0.8));
    else if (k === "n") void submitAndNext();
    else if ((k === "a" || k === "r") && selectedProposal) {
      const o = objects.find((x) => x.key === selectedProposal);
      if (o) {
        void act(async () => {
          if (k === "a") { o.annotation = await api.updateAnnotation(o.annotation!.id, { source: "semi_auto_accepted" }); o.source = o.annotation.source; }
          else { await api.deleteAnnotation(o.annotation!.id); objects = objects.filter((x) => x !== o); }
          selectedProposal = objects.find((x) => x.source === "semi_auto")?.key ?? null;
        });
      }
    } else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);

  try {
    project = await api.getProject(projectId);
    labels = project.labels;
    labelId = labels[0]?.id ?? 0;
    renderLabels();
    await flush();
    await nextImage();
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
