/**
 * The admin console: create projects with labels and users; per project upload images, switch
 * the stage, manage members, watch progress, run/promote/discard training rounds, see model
 * versions and metrics (SVG bars), and download exports.
 */
import { ApiError } from "../api/client";
import type { Job, Label, Project, Stage } from "../api/types";
import { barChart, evalValue, numericMetrics } from "../admin/chart";
import { imageBrowser } from "../admin/images";
import { errorText, h, mount, plural, statusLine } from "../dom";
import { api } from "../session";

const STAGES: Stage[] = ["assisted_manual", "semi_automatic", "fully_automatic"];

/**
 * Refuse in words a number field holding text the browser cannot read as a number ("1e", "-"): its
 * value is then "", which would otherwise be taken for an empty field and the server's default used.
 */
function checkNumbers(...fields: [HTMLInputElement, string][]): void {
  for (const [input, what] of fields) if (input.validity.badInput) throw new Error(`${what}: what is typed is not a number`);
}

export async function adminHome(root: HTMLElement, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  const name = h("input", { id: "project-name", placeholder: "project name" });
  const labels = h("input", { id: "project-labels", placeholder: "labels, comma separated (name or name:#rrggbb)" });
  const uname = h("input", { id: "new-username", placeholder: "username" });
  const upass = h("input", { id: "new-password", type: "password", placeholder: "password" });
  const urole = h("select", { id: "new-role" }, h("option", { value: "annotator" }, "annotator"), h("option", { value: "admin" }, "admin"));
  const list = h("ul", { id: "admin-projects" });
  const models = h("div", { id: "models" });
  const palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];
  const create = h("form", { class: "card" }, h("h2", {}, "New project"), name, labels, h("button", { id: "create-project", type: "submit" }, "Create project"));
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      if (!name.value.trim()) throw new Error("type a project name first");
      // each entry checked here, so the message names the label as typed (the server's names "labels.0.color")
      const seen = new Set<string>();
      const parsed = labels.value.split(",").map((s) => s.trim()).filter(Boolean).map((s, i) => {
        const [n, ...rest] = s.split(":");
        const label = { name: n.trim(), color: rest.join(":").trim() || palette[i % palette.length] };
        if (!label.name) throw new Error(`the label "${s}" has no name before its colour`);
        if (label.name.length > 120) throw new Error(`the label name "${label.name.slice(0, 30)}…" is longer than 120 characters`);
        if (!/^#[0-9a-fA-F]{6}$/.test(label.color)) throw new Error(`label ${label.name}: the colour "${label.color}" is not of the form #rrggbb (e.g. #ff8800)`);
        if (seen.has(label.name)) throw new Error(`the label ${label.name} is listed twice`);
        seen.add(label.name);
        return label;
      });
      const p = await api.createProject(name.value.trim(), parsed);
      go(`/admin/${p.id}`);
    } catch (err) { status.say(errorText(err), "error"); }
  });
  const userForm = h("form", { class: "card" }, h("h2", {}, "New user"), uname, upass, urole, h("button", { id: "create-user", type: "submit" }, "Create user"));
  userForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const u = await api.createUser(uname.value.trim(), upass.value, urole.value as "admin" | "annotator");
      status.say(`Created user ${u.username} (id ${u.id}).`, "ok");
    } catch (err) { status.say(errorText(err), "error"); }
  });
  mount(root, h("h1", {}, "Admin console"), h("p", {}, h("a", { href: "/projects", "data-nav": "1" }, "← Projects")), status,
    h("div", { class: "cards" }, create, userForm), h("h2", {}, "Projects"), list, h("h2", {}, "Model versions"), models);
  try {
    const [projects, mvs] = await Promise.all([api.listProjects(), api.listModels()]);
    mount(list, ...(projects.length ? projects.map((p) => h("li", {}, h("a", { href: `/admin/${p.id}`, "data-nav": "1" }, p.name), ` — ${p.stage}`))
      : [h("li", {}, "No projects yet: create one above.")]));
    mount(models, h("table", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "arch"), h("th", {}, "parent"), h("th", {}, "round"), h("th", {}, "created")),
      ...mvs.map((m) => h("tr", {}, h("td", {}, String(m.id)), h("td", {}, m.name), h("td", {}, m.arch), h("td", {}, String(m.parent_id ?? "")),
        h("td", {}, String(m.round_id ?? "")), h("td", {}, m.created_at.slice(0, 19))))));
  } catch (err) { status.say(errorText(err), "error"); }
}

const CHARTED = ["seconds_per_mask", "clicks_per_mask", "masks_per_image", "masks", "proposal_accept_share"];

/** The evaluation numbers charted per model version (lower NoC is better, higher mIoU). */
const MODEL_METRICS = ["noc@85", "noc@90", "miou@1", "miou@5"];


/**
 * Charts: per stage and per model version (seconds, clicks and masks), the same over time (one
 * bar per day), and each model version's held-out NoC / mIoU.
 */
function metricCharts(metrics: Record<string, unknown>): Node[] {
  const groups: [string, Record<string, unknown>][] = [];
  for (const [stage, v] of Object.entries((metrics.stages ?? {}) as Record<string, Record<string, unknown>>)) groups.push([stage, v]);
  for (const [mv, v] of Object.entries((metrics.by_model_version ?? {}) as Record<string, Record<string, unknown>>)) groups.push([`model ${mv}`, v]);
  if (!groups.length) return [h("p", {}, "No metrics yet.")];
  const value = (v: Record<string, unknown>, key: string): number | null => (typeof v[key] === "number" ? (v[key] as number) : null);
  const out: Node[] = CHARTED.map((key) => h("div", { class: "metric" }, h("h4", {}, `${key.replace(/_/g, " ")} per stage and model`),
    barChart(groups.map(([n]) => n), [{ label: key, color: "#27ae60", values: groups.map(([, v]) => value(v, key)) }])));
  const days = (metrics.timeline ?? []) as Record<string, unknown>[];
  if (days.length) {
    out.push(h("div", { class: "metric", id: "metric-timeline" }, h("h4", {}, "over time (per day): seconds and clicks per mask"),
      barChart(days.map((d) => String(d.day)), [
        { label: "seconds/mask", color: "#8e44ad", values: days.map((d) => value(d, "seconds_per_mask")) },
        { label: "clicks/mask", color: "#e67e22", values: days.map((d) => value(d, "clicks_per_mask")) }], true)));
  }
  const models = ((metrics.models ?? []) as { id: number; name: string; metrics: unknown }[])
    .filter((m) => MODEL_METRICS.some((k) => evalValue(m.metrics, k) !== null));
  if (models.length) {
    // one chart per quantity (NoC counts clicks, mIoU is a fraction): a bar per model version
    const colors = ["#c0392b", "#d35400", "#2980b9", "#16a085"];
    out.push(h("div", { class: "metric", id: "metric-models" }, h("h4", {}, "model versions, each on its own held-out split (shipped model: its eval report; a round: the round's held-out masks): NoC@85/90 (lower is better), mIoU@1/5"),
      ...MODEL_METRICS.map((k, i) => barChart(models.map((m) => `${m.id}: ${m.name}`),
        [{ label: k, color: colors[i], values: models.map((m) => evalValue(m.metrics, k)) }]))));
  }
  return out;
}

/** Per annotator: masks, time, effort per mask and what review made of their masks; then the review totals. */
function annotatorTables(metrics: Record<string, unknown>): Node[] {
  type Row = { username: string | null; user_id: number; masks: number; seconds: number; masks_per_hour: number | null;
    seconds_per_mask: number | null; clicks_per_mask: number | null; review?: Record<string, number>; review_rejected_share?: number | null };
  const rows = (metrics.annotators ?? []) as Row[];
  const num = (v: number | null | undefined, digits = 1): string => (typeof v === "number" ? v.toFixed(digits) : "–");
  const review = (metrics.review ?? null) as { images_to_review: number; images_reviewed: number; images_sent_back: number;
    masks: Record<string, number> } | null;
  const out: Node[] = [h("h3", {}, "Annotators")];
  out.push(rows.length ? h("table", { id: "metric-annotators" },
    h("tr", {}, ...["annotator", "masks", "hours", "masks/hour", "s/mask", "clicks/mask", "accepted in review", "rejected in review", "rejected share"]
      .map((t) => h("th", {}, t))),
    ...rows.map((r) => h("tr", { "data-user-id": r.user_id }, h("td", {}, r.username ?? `user ${r.user_id}`), h("td", {}, String(r.masks)),
      h("td", {}, num(r.seconds / 3600, 2)), h("td", {}, num(r.masks_per_hour)), h("td", {}, num(r.seconds_per_mask)),
      h("td", {}, num(r.clicks_per_mask)), h("td", {}, String(r.review?.accepted ?? 0)), h("td", {}, String(r.review?.rejected ?? 0)),
      h("td", {}, typeof r.review_rejected_share === "number" ? `${Math.round(r.review_rejected_share * 100)} %` : "–")))) : h("p", {}, "No masks by annotators yet."));
  if (review) {
    out.push(h("p", { id: "metric-review" }, `Review: ${plural(review.images_to_review, "submitted image")} waiting, ${review.images_reviewed} approved, `
      + `${review.images_sent_back} sent back and not resubmitted; masks ${review.masks.accepted ?? 0} accepted, ${review.masks.rejected ?? 0} rejected, `
      + `${review.masks.pending ?? 0} not reviewed.`));
  }
  return out;
}

/** Images by status and annotations by stage and source, as tables. */
function progressTables(prog: Record<string, unknown>): Node[] {
  const byStatus = (prog.images_by_status ?? {}) as Record<string, number>;
  const byStage = (prog.annotations_by_stage ?? {}) as Record<string, Record<string, number>>;
  const sources = [...new Set(Object.values(byStage).flatMap((v) => Object.keys(v)))].sort();
  return [
    h("p", {}, `${plural(Number(prog.images ?? 0), "image")}; stage ${String(prog.stage ?? "")}`),
    h("table", { id: "progress-images" }, h("tr", {}, ...Object.keys(byStatus).map((k) => h("th", {}, k))),
      h("tr", {}, ...Object.values(byStatus).map((v) => h("td", {}, String(v))))),
    sources.length ? h("table", { id: "progress-annotations" }, h("tr", {}, h("th", {}, "stage"), ...sources.map((k) => h("th", {}, k)), h("th", {}, "total")),
      ...Object.entries(byStage).map(([stage, v]) => h("tr", {}, h("td", {}, stage), ...sources.map((k) => h("td", {}, String(v[k] ?? 0))),
        h("td", {}, String(Object.values(v).reduce((a, b) => a + b, 0)))))) : h("p", {}, "No annotations yet."),
  ];
}

/** The project's jobs; one that has not ended has a Cancel button (`cancel(job)`). */
function jobsTable(jobs: Job[], cancel: (j: Job) => void): Node {
  if (!jobs.length) return h("p", {}, "No jobs yet.");
  return h("table", {}, h("tr", {}, h("th", {}, "job"), h("th", {}, "kind"), h("th", {}, "status"), h("th", {}, "progress"), h("th", {}, "message"), h("th", {}, "")),
    ...jobs.map((j) => h("tr", { "data-job-id": j.id }, h("td", {}, String(j.id)), h("td", {}, j.kind), h("td", {}, j.status),
      h("td", {}, `${Math.round(j.progress * 100)}% (${j.done}/${j.total})`), h("td", {}, j.error ? `${j.status === "cancelled" ? "" : "error: "}${j.error}` : j.message ?? ""),
      h("td", {}, j.status === "queued" || j.status === "running"
        ? h("button", { class: "cancel-job", title: "stop this job before its next image", onclick: () => cancel(j) }, "Cancel") : ""))));
}

/** What an action says when part of it was refused (some files of an upload): shown in the error tone. */
class Partly {
  constructor(readonly text: string) {}
}

/** An upload's or import's counts and refused files; `Partly` when any file was refused. */
function fileReport(verb: string, r: { created?: unknown[]; duplicates?: unknown[]; errors?: { filename: string; detail: string }[] }): string | Partly {
  const errors = r.errors ?? [];
  const text = `${r.created?.length ?? 0} ${verb}, ${r.duplicates?.length ?? 0} duplicates, ${errors.length} errors${errors.map((e) => `; ${fileError(e)}`).join("")}`;
  return errors.length ? new Partly(text) : text;
}

/** One refused file of an upload or import, "NAME: why" (the server's reason usually names the file already). */
function fileError(e: { filename: string; detail: string }): string {
  return e.detail.startsWith(`${e.filename}:`) ? e.detail : `${e.filename}: ${e.detail}`;
}

async function download(path: string, fallbackName: string): Promise<void> {
  const res = await api.raw(path);
  const blob = await res.blob();
  const cd = res.headers.get("Content-Disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(cd)?.[1] ?? fallbackName;
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

export async function adminProject(root: HTMLElement, projectId: number, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  let project: Project;
  try {
    project = await api.getProject(projectId);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the login page is shown instead
    status.say(errorText(err), "error");
    mount(root, h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "← Admin console")), status);
    return;
  }
  const files = h("input", { id: "upload-files", type: "file", multiple: true, accept: "image/*" });
  const images = imageBrowser(projectId, go, (text, tone) => status.say(text, tone));
  const stage = h("select", { id: "stage-select" }, ...STAGES.map((s) => h("option", { value: s, selected: s === project.stage }, s)));
  const instructions = h("textarea", { id: "instructions", rows: 6, cols: 60, maxlength: 20000,
    placeholder: "what to outline and how (shown to annotators beside the image; empty: none)" }) as HTMLTextAreaElement;
  instructions.value = project.instructions ?? "";
  const member = h("select", { id: "member-id" });
  const membersEl = h("p", { id: "members" });
  const progressEl = h("div", { id: "progress" });
  const reviewBtn = h("button", { id: "open-review", title: "approve the submitted images or send them back with a note",
    onclick: () => go(`/review/${projectId}`) }, "Review submitted images");
  const jobsEl = h("div", { id: "jobs" });
  const labelName = h("input", { id: "label-name", placeholder: "new label" });
  const labelColor = h("input", { id: "label-color", type: "color", value: "#1e90ff" });
  const folder = h("input", { id: "import-folder", placeholder: "server folder below an import root" });
  const grid = h("input", { id: "job-grid", type: "number", min: 1, max: 128, placeholder: "default" });
  const iouMin = h("input", { id: "job-iou", type: "number", min: 0, max: 1, step: 0.01, placeholder: "default" });
  // the bar on the object score (edges, colour contrast, size): higher gives fewer, more object-like masks
  const objectMin = h("input", { id: "job-object", type: "number", min: 0, max: 1, step: 0.001, placeholder: "default",
    title: "drop masks that look less like whole objects; the compact models' default is 0.005, 0.01–0.02 gives a short list" });
  // masks are refined with the image as annotators' masks are, unless this is unticked
  const refineBox = h("input", { id: "job-refine", type: "checkbox", checked: true });
  const jobBody = (): Record<string, number | boolean> => {
    checkNumbers([grid, "points per side"], [iouMin, "min predicted IoU"], [objectMin, "min object score"]);
    return { ...(grid.value ? { points_per_side: Number(grid.value) } : {}), ...(iouMin.value ? { pred_iou_thresh: Number(iouMin.value) } : {}),
      ...(objectMin.value ? { min_object_score: Number(objectMin.value) } : {}), ...(refineBox.checked ? {} : { refine: false }) };
  };
  const roundsEl = h("div", { id: "rounds" });
  // exports: everything, or only what review accepted
  const approvedOnly = h("input", { id: "export-approved", type: "checkbox" }) as HTMLInputElement;
  const exportButton = (format: string, text: string, ext: string, title?: string): HTMLButtonElement => h("button", {
    id: `export-${format}`, title,
    onclick: () => void download(`/projects/${projectId}/export?format=${format}${approvedOnly.checked ? "&review_state=accepted" : ""}`,
      `project-${projectId}-${format}${approvedOnly.checked ? "-approved" : ""}.${ext}`).catch((e) => status.say(errorText(e), "error")),
  }, text);
  const metricsEl = h("div", { id: "metrics" });
  const steps = h("input", { id: "round-steps", type: "number", value: 200, min: 1 });
  // a round's other settings: empty (or "default") leaves them to the model's own recipe on the server
  const roundLr = h("input", { id: "round-lr", type: "number", min: 0, step: 0.00001, placeholder: "default" });
  const roundMinutes = h("input", { id: "round-minutes", type: "number", min: 0, step: 1, placeholder: "none",
    title: "stop training after this many minutes, whatever the steps" });
  const roundEncoder = h("select", { id: "round-encoder" }, h("option", { value: "" }, "default"),
    h("option", { value: "frozen" }, "frozen"), h("option", { value: "trained" }, "trained"));
  const roundBody = (): { steps: number; learning_rate?: number; time_budget_seconds?: number; freeze_image_encoder?: boolean } => {
    checkNumbers([steps, "steps"], [roundLr, "learning rate"], [roundMinutes, "time budget"]);
    const n = Number(steps.value);
    if (!Number.isInteger(n) || n < 1) throw new Error("steps must be a whole number of at least 1");
    const lr = roundLr.value ? Number(roundLr.value) : undefined;
    if (lr !== undefined && !(lr > 0 && lr <= 1)) throw new Error("learning rate must be above 0 and at most 1");
    const minutes = roundMinutes.value ? Number(roundMinutes.value) : undefined;
    if (minutes !== undefined && !(minutes > 0)) throw new Error("the time budget must be more than 0 minutes");
    return { steps: n, ...(lr !== undefined ? { learning_rate: lr } : {}),
      ...(minutes !== undefined ? { time_budget_seconds: minutes * 60 } : {}),
      ...(roundEncoder.value ? { freeze_image_encoder: roundEncoder.value === "frozen" } : {}) };
  };
  // set when the admin picks a model in the list, cleared once it is made the active one
  let modelTouched = false;
  const activeModel = h("select", { id: "active-model", onchange: () => { modelTouched = true; } });
  let poll: ReturnType<typeof setTimeout> | undefined;

  const refresh = async (): Promise<void> => {
    try {
      const [prog, rounds, metrics, p, mvs, users, jobs] = await Promise.all([api.progress(projectId), api.listRounds(projectId),
        api.metrics(projectId), api.getProject(projectId), api.listModels(), api.listUsers(), api.listJobs(projectId)]);
      project = p;
      const name = (id: number) => users.find((u) => u.id === id)?.username ?? `user ${id}`;
      membersEl.textContent = `Members: ${p.member_ids.map(name).join(", ") || "none (admins see every project)"}`;
      // the user picked in the member list and the model picked stay picked across this refresh (every
      // 3 s while a job runs): Add / Use this model then act on what is shown
      const memberPicked = member.value, modelPicked = modelTouched ? activeModel.value : "";
      mount(member, ...users.map((u) => h("option", { value: u.id, selected: String(u.id) === memberPicked }, `${u.username} (${u.role})`)));
      mount(activeModel, ...mvs.map((m) => h("option", { value: m.id,
        selected: modelPicked ? String(m.id) === modelPicked : m.id === p.active_model_version_id }, `${m.id}: ${m.name} (${m.arch})`)));
      if (rounds.some((r) => r.status === "queued" || r.status === "running") || jobs.some((j) => j.status === "queued" || j.status === "running")) {
        clearTimeout(poll);
        poll = setTimeout(() => { if (document.body.contains(roundsEl)) void refresh(); }, 3000);
      }
      mount(progressEl, ...progressTables(prog));
      const submitted = Number(((prog.images_by_status ?? {}) as Record<string, number>).done ?? 0);
      reviewBtn.textContent = `Review submitted images (${submitted})`;
      void images.reload();
      mount(jobsEl, jobsTable(jobs, (j) => void act(() => api.cancelJob(j.id), `Job ${j.id} cancelled.`)));
      // label rows are made anew only when the labels changed: the 3-second refresh while a job runs
      // must not wipe a name or colour being edited
      const labelsNow = JSON.stringify(project.labels);
      if (labelsNow !== labelsShown) {
        labelsShown = labelsNow;
        mount(labelsEl, ...project.labels.map((l) => labelRow(l)));
      }
      mount(roundsEl, rounds.length ? h("table", {}, h("tr", {}, h("th", {}, "round"), h("th", {}, "status"), h("th", {}, "progress"), h("th", {}, "metrics before / after"), h("th", {}, "")),
        ...rounds.map((r) => {
          const before = numericMetrics(r.metrics_before), after = numericMetrics(r.metrics_after);
          const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].slice(0, 8);
          return h("tr", { "data-round-id": r.id },
            h("td", {}, String(r.id)), h("td", {}, r.status + (r.error ? `: ${r.error}` : "")), h("td", {}, `${Math.round(r.progress * 100)}% ${r.message ?? ""}`),
            h("td", {}, names.length ? barChart(names, [
              { label: "before", color: "#999", values: names.map((n) => before[n] ?? null) },
              { label: "after", color: "#2e86de", values: names.map((n) => after[n] ?? null) }], true) : "—"),
            h("td", {}, r.status === "succeeded" ? h("span", {},
              h("button", { onclick: () => void act(() => api.promoteRound(r.id), "Round promoted.") }, "Promote"),
              h("button", { onclick: () => void act(() => api.discardRound(r.id), "Round discarded.") }, "Discard"))
              : r.status === "queued" || r.status === "running"
                ? h("button", { class: "cancel-round", title: "stop this round at its next training step; it makes no model",
                  onclick: () => void act(() => api.cancelRound(r.id), `Round ${r.id} cancelled.`) }, "Cancel")
                : ""));
        })) : h("p", {}, "No rounds yet."));
      mount(metricsEl, ...annotatorTables(metrics), ...metricCharts(metrics));
    } catch (err) { status.say(errorText(err), "error"); }
  };
  /** run an action and say how it went: its own text (a `Partly` one in the error tone), else `ok` */
  const act = async (fn: () => Promise<unknown>, ok: string): Promise<void> => {
    try {
      const r = await fn();
      if (r instanceof Partly) status.say(r.text, "error");
      else status.say(typeof r === "string" ? r : ok, "ok");
    } catch (err) { status.say(errorText(err), "error"); }
    await refresh();
  };

  const labelsEl = h("div", { id: "label-chips" });
  let labelsShown = "";
  // one row per label: rename or recolour it in place (Save), or delete it (the server refuses while
  // annotations use it, and says how many)
  const labelRow = (l: Label): HTMLElement => {
    const nameIn = h("input", { class: "label-name", value: l.name, "aria-label": `name of label ${l.name}` }) as HTMLInputElement;
    const colorIn = h("input", { class: "label-color", type: "color", value: l.color, "aria-label": `colour of label ${l.name}` }) as HTMLInputElement;
    return h("div", { class: "label-row", "data-label-id": l.id },
      h("span", { class: "chip", style: `border-color:${l.color}` }, l.name), nameIn, colorIn,
      h("button", { class: "label-save", onclick: () => void act(async () => {
        const name = nameIn.value.trim();
        if (!name) throw new Error("a label needs a name");
        const patch = { ...(name !== l.name ? { name } : {}), ...(colorIn.value !== l.color ? { color: colorIn.value } : {}) };
        if (!Object.keys(patch).length) return `Label ${l.name} unchanged.`;
        const saved = await api.updateLabel(l.id, patch);
        return `Label ${saved.name} saved.`;
      }, "Label saved.") }, "Save"),
      h("button", { class: "label-delete", onclick: () => void act(async () => {
        if (!window.confirm(`Delete label ${l.name}?`)) return "Nothing deleted.";
        await api.deleteLabel(l.id);
        return `Label ${l.name} deleted.`;
      }, "Label deleted.") }, "Delete"));
  };
  const upload = h("button", { id: "upload", onclick: () => void act(async () => {
    const list = Array.from(files.files ?? []);
    if (!list.length) throw new Error("choose image files first");
    const r = await api.uploadImages(projectId, list);
    return fileReport("uploaded", r);
  }, "Upload done.") }, "Upload");
  mount(root, h("h1", {}, `Project: ${project.name}`),
    h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "← Admin console"), " · ", h("button", { onclick: () => go(`/annotate/${projectId}`) }, "Annotate")),
    status,
    h("section", { class: "card" }, h("h2", {}, "Labels"), labelsEl, labelName, labelColor,
      h("button", { id: "add-label", onclick: () => void act(async () => {
        if (!labelName.value.trim()) throw new Error("type a label name first");
        const l = await api.addLabel(projectId, labelName.value.trim(), labelColor.value);
        labelName.value = "";
        return `Label ${l.name} added.`;
      }, "Label added.") }, "Add label")),
    h("section", { class: "card" }, h("h2", {}, "Images"), files, upload, h("br"), folder,
      h("button", { id: "import-folder-go", onclick: () => void act(async () => {
        if (!folder.value.trim()) throw new Error("type a folder path on the server first");
        const r = (await api.importFolder(projectId, folder.value.trim())) as { created?: unknown[]; duplicates?: unknown[]; errors?: { filename: string; detail: string }[] };
        // a folder without image files is answered with empty lists: say so rather than "0 imported"
        if (!r.created?.length && !r.duplicates?.length && !r.errors?.length) throw new Error(`there are no image files in ${folder.value.trim()}: nothing was imported`);
        return fileReport("imported", r);
      }, "Import done.") }, "Import folder"), images.el),
    h("section", { class: "card" }, h("h2", {}, "Instructions for annotators"), instructions, h("br"),
      h("button", { id: "instructions-save", onclick: () => void act(async () => {
        await api.updateProject(projectId, { instructions: instructions.value });
      }, "Instructions saved; annotators see them on their next image.") }, "Save instructions")),
    h("section", { class: "card" }, h("h2", {}, "Stage"), stage,
      h("button", { id: "stage-save", onclick: () => void act(() => api.updateProject(projectId, { stage: stage.value as Stage }), "Stage changed.") }, "Switch stage"),
      h("h3", {}, "Model jobs"), h("label", { class: "field" }, "points per side ", grid),
      h("label", { class: "field" }, "min predicted IoU ", iouMin), h("label", { class: "field" }, "min object score ", objectMin),
      h("label", { class: "field", title: "refine each mask with the image, as annotators' masks are" }, refineBox, " refine masks"),
      h("button", { id: "start-prefill", onclick: () => void act(() => api.startJob(projectId, "prefill", jobBody()), "Prefill job started.") }, "Prefill proposals"),
      h("button", { id: "start-automatic", onclick: () => void act(() => api.startJob(projectId, "automatic", jobBody()), "Automatic job started.") }, "Run automatic"),
      jobsEl),
    h("section", { class: "card" }, h("h2", {}, "Members"), membersEl, member,
      h("button", { onclick: () => void act(() => api.addMember(projectId, Number(member.value)), "Member added.") }, "Add"),
      h("button", { onclick: () => void act(() => api.removeMember(projectId, Number(member.value)), "Member removed.") }, "Remove")),
    h("section", { class: "card" }, h("h2", {}, "Progress"), progressEl, reviewBtn),
    h("section", { class: "card" }, h("h2", {}, "Training rounds"), h("label", { class: "field" }, "steps ", steps),
      h("label", { class: "field" }, "learning rate ", roundLr), h("label", { class: "field" }, "time budget (min) ", roundMinutes),
      h("label", { class: "field" }, "image encoder ", roundEncoder),
      h("button", { id: "start-round", onclick: () => void act(() => api.startRound(projectId, roundBody()), "Round started.") }, "Start round"), roundsEl),
    h("section", { class: "card" }, h("h2", {}, "Model"), activeModel,
      h("button", { id: "active-model-save", onclick: () => void act(async () => {
        await api.setActiveModel(projectId, Number(activeModel.value));
        modelTouched = false;
      }, "Active model changed.") }, "Use this model")),
    h("section", { class: "card" }, h("h2", {}, "Metrics"), metricsEl),
    h("section", { class: "card" }, h("h2", {}, "Export"),
      h("label", { class: "field", title: "only masks a reviewer accepted (approved images)" }, approvedOnly, " approved masks only"),
      exportButton("coco", "COCO JSON", "json"), exportButton("sa1b", "SA-1B zip", "zip"),
      exportButton("yolo", "YOLO-seg zip", "zip", "YOLO segmentation labels (polygons) and data.yaml, for Ultralytics-style training")),
    h("section", { class: "card danger" }, h("h2", {}, "Delete the project"),
      h("p", { class: "help" }, "Removes the project with all its images, annotations, jobs and rounds (model versions stay). This cannot be undone."),
      h("button", { id: "delete-project", onclick: () => void (async () => {
        const typed = window.prompt(`Type the project's name, ${project.name}, to delete it with everything in it:`);
        if (typed === null) return;
        if (typed.trim() !== project.name) { status.say("The name typed does not match; nothing was deleted.", "error"); return; }
        try {
          await api.deleteProject(projectId);
          go("/admin");
        } catch (err) { status.say(`The project was not deleted: ${errorText(err)}`, "error"); }
      })() }, "Delete project…")),
  );
  await refresh();
}
