/** The project list: open the annotator, or (admins) the admin console of a project. */
import { errorText, h, mount, plural, statusLine } from "../dom";
import { api, currentUser } from "../session";

export async function projectsPage(root: HTMLElement, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  const list = h("ul", { id: "projects" });
  const admin = currentUser()?.role === "admin";
  mount(root, h("h1", {}, "Projects"), admin ? h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "Admin console")) : null, list, status);
  try {
    const projects = await api.listProjects();
    if (!projects.length) status.say(admin ? "No projects yet: create one in the admin console." : "You are not a member of any project yet.");
    // how far each project is (images done of all), fetched beside the list; a project whose
    // progress cannot be read still shows
    const progress = await Promise.all(projects.map((p) => api.progress(p.id).catch(() => null)));
    mount(list, ...projects.map((p, i) => h("li", { "data-project-id": p.id },
      h("strong", {}, p.name), ` (${p.stage}) `, progressText(progress[i]),
      h("button", { class: "annotate", "data-project-id": p.id, onclick: () => go(`/annotate/${p.id}`) }, "Annotate"),
      admin ? h("button", { onclick: () => go(`/admin/${p.id}`) }, "Manage") : null)));
  } catch (err) {
    status.say(errorText(err), "error");
  }
}

/** "3 of 40 images done " from a project's progress, "" when it is unknown. */
function progressText(prog: Record<string, unknown> | null): string {
  if (!prog) return "";
  const total = Number(prog.images ?? 0);
  const byStatus = (prog.images_by_status ?? {}) as Record<string, number>;
  const done = (byStatus.done ?? 0) + (byStatus.reviewed ?? 0);
  return total ? `${done} of ${plural(total, "image")} done ` : "no images yet ";
}
