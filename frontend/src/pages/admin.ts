/**
 * The admin console: create projects with labels and users; per project upload images, switch
 * the stage, manage members, watch progress, run/promote/discard training rounds, see model
 * versions and metrics (SVG bars), and download exports.
 */
import type { Project, Stage } from "../api/types";
import { barChart, numericMetrics } from "../admin/chart";
import { errorText, h, mount, statusLine } from "../dom";
import { api } from "../session";

const STAGES: Stage[] = ["assisted_manual", "semi_automatic", "fully_automatic"];

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
    const parsed = labels.value.split(",").map((s) => s.trim()).filter(Boolean).map((s, i) => {
      const [n, c] = s.split(":");
      return { name: n.trim(), color: c?.trim() || palette[i % palette.length] };
    });
    try {
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
    mount(list, ...projects.map((p) => h("li", {}, h("a", { href: `/admin/${p.id}`, "data-nav": "1" }, p.name), ` — ${p.stage}`)));
    mount(models, h("table", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "arch"), h("th", {}, "parent"), h("th", {}, "round"), h("th", {}, "created")),
      ...mvs.map((m) => h("tr", {}, h("td", {}, String(m.id)), h("td", {}, m.name), h("td", {}, m.arch), h("td", {}, String(m.parent_id ?? "")),
        h("td", {}, String(m.round_id ?? "")), h("td", {}, m.created_at.slice(0, 19))))));
  } catch (err) { status.say(errorText(err), "error"); }
}

const CHARTED = ["seconds_per_mask", "clicks_per_mask", "masks_per_image", "masks"];

/** One bar chart per quantity, bars for each stage and each model version. */
function metricCharts(metrics: Record<string, unknown>): Node[] {
  const groups: [string, Record<string, unknown>][] = [];
  for (const [stage, v] of Object.entries((metrics.stages ?? {}) as Record<string, Record<string, unknown>>)) groups.push([stage, v]);
  for (const [mv, v] of Object.entries((metrics.by_model_version ?? {}) as Record<string, Record<string, unknown>>)) groups.push([`model ${mv}`, v]);
  if (!groups.length) return [h("p", {}, "No metrics yet.")];
  return CHARTED.map((key) => h("div", { class: "metric" }, h("h4", {}, key.replace(/_/g, " ")),
    barChart(groups.map(([n]) => n), [{ label: key, color: "#27ae60", values: groups.map(([, v]) => (typeof v[key] === "number" ? (v[key] as number) : null)) }])));
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
    status.say(errorText(err), "error");
    mount(root, h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "← Admin console")), status);
    return;
  }
  const files = h("input", { id: "upload-files", type: "file", multiple: true, accept: "image/*" });
  const stage = h("select", { id: "stage-select" }, ...STAGES.map((s) => h("option", { value: s, selected: s === project.stage }, s)));
  const member = h("select", { id: "member-id" });
  const membersEl = h("p", { id: "members" });
  const progressEl = h("pre", { id: "progress" });
  const roundsEl = h("div", { id: "rounds" });
  const metricsEl = h("div", { id: "metrics" });
  const steps = h("input", { id: "round-steps", type: "number", value: 200, min: 1 });
  const activeModel = h("select", { id: "active-model" });
  let poll: ReturnType<typeof setTimeout> | undefined;

  const refresh = async (): Promise<void> => {
    try {
      const [prog, rounds, metrics, p, mvs, users] = await Promise.all([api.progress(projectId), api.listRounds(projectId),
        api.metrics(projectId), api.getProject(projectId), api.listModels(), api.listUsers()]);
      project = p;
      const name = (id: number) => users.find((u) => u.id === id)?.username ?? `user ${id}`;
      membersEl.textContent = `Members: ${p.member_ids.map(name).join(", ") || "none (admins see every project)"}`;
      mount(member, ...users.map((u) => h("option", { value: u.id }, `${u.username} (${u.role})`)));
      mount(activeModel, ...mvs.map((m) => h("option", { value: m.id, selected: m.id === p.active_model_version_id }, `${m.id}: ${m.name} (${m.arch})`)));
      if (rounds.some((r) => r.status === "queued" || r.status === "running")) {
        clearTimeout(poll);
        poll = setTimeout(() => { if (document.body.contains(roundsEl)) void refresh(); }, 3000);
      }
      progressEl.textContent = JSON.stringify(prog, null, 1);
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
              h("button", { onclick: () => void act(() => api.discardRound(r.id), "Round discarded.") }, "Discard")) : ""));
        })) : h("p", {}, "No rounds yet."));
      mount(metricsEl, ...metricCharts(metrics));
    } catch (err) { status.say(errorText(err), "error"); }
  };
  const act = async (fn: () => Promise<unknown>, ok: string): Promise<void> => {
    try {
      const r = await fn();
      status.say(typeof r === "string" ? r : ok, "ok");
    } catch (err) { status.say(errorText(err), "error"); }
    await refresh();
  };

  const upload = h("button", { id: "upload", onclick: () => void act(async () => {
    const list = Array.from(files.files ?? []);
    if (!list.length) throw new Error("choose image files first");
    const r = await api.uploadImages(projectId, list);
    return `${r.created.length} uploaded, ${r.duplicates.length} duplicates, ${r.errors.length} errors${r.errors.map((e) => `; ${e.filename}: ${e.detail}`).join("")}`;
  }, "Upload done.") }, "Upload");
  mount(root, h("h1", {}, `Project: ${project.name}`),
    h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "← Admin console"), " · ", h("button", { onclick: () => go(`/annotate/${projectId}`) }, "Annotate")),
    status,
    h("section", { class: "card" }, h("h2", {}, "Labels"), h("p", {}, ...project.labels.map((l) => h("span", { class: "chip", style: `border-color:${l.color}` }, l.name)))),
    h("section", { class: "card" }, h("h2", {}, "Images"), files, upload),
    h("section", { class: "card" }, h("h2", {}, "Stage"), stage,
      h("button", { id: "stage-save", onclick: () => void act(() => api.updateProject(projectId, { stage: stage.value as Stage }), "Stage changed.") }, "Switch stage"),
      h("button", { onclick: () => void act(() => api.startJob(projectId, "prefill"), "Prefill job started.") }, "Prefill proposals"),
      h("button", { onclick: () => void act(() => api.startJob(projectId, "automatic"), "Automatic job started.") }, "Run automatic")),
    h("section", { class: "card" }, h("h2", {}, "Members"), membersEl, member,
      h("button", { onclick: () => void act(() => api.addMember(projectId, Number(member.value)), "Member added.") }, "Add"),
      h("button", { onclick: () => void act(() => api.removeMember(projectId, Number(member.value)), "Member removed.") }, "Remove")),
    h("section", { class: "card" }, h("h2", {}, "Progress"), progressEl),
    h("section", { class: "card" }, h("h2", {}, "Training rounds"), h("label", {}, "steps ", steps),
      h("button", { id: "start-round", onclick: () => void act(() => api.startRound(projectId, { steps: Number(steps.value) }), "Round started.") }, "Start round"), roundsEl),
    h("section", { class: "card" }, h("h2", {}, "Model"), activeModel,
      h("button", { id: "active-model-save", onclick: () => void act(() => api.setActiveModel(projectId, Number(activeModel.value)), "Active model changed.") }, "Use this model")),
    h("section", { class: "card" }, h("h2", {}, "Metrics"), metricsEl),
    h("section", { class: "card" }, h("h2", {}, "Export"),
      h("button", { onclick: () => void download(`/projects/${projectId}/export?format=coco`, `project-${projectId}-coco.json`).catch((e) => status.say(errorText(e), "error")) }, "COCO JSON"),
      h("button", { onclick: () => void download(`/projects/${projectId}/export?format=sa1b`, `project-${projectId}-sa1b.zip`).catch((e) => status.say(errorText(e), "error")) }, "SA-1B zip")),
  );
  await refresh();
}
