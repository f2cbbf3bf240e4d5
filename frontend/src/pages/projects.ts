/** The project list: open the annotator, or (admins) the admin console of a project. */
import type { Project } from "../api/types";
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
    // how far each project is (images done of all) comes with the list
    mount(list, ...projects.map((p) => h("li", { "data-project-id": p.id },
      h("strong", {}, p.name), ` (${p.stage}) `, progressText(p),
      h("button", { class: "annotate", "data-project-id": p.id, onclick: () => go(`/annotate/${p.id}`) }, "Annotate"),
      admin ? h("button", { onclick: () => go(`/admin/${p.id}`) }, "Manage") : null)));
  } catch (err) {
    status.say(errorText(err), "error");
  }
}

/** "3 of 40 images done " from the project list's counts, "" when they are unknown. */
function progressText(p: Project): string {
  if (typeof p.images !== "number") return "";
  return p.images ? `${p.images_done ?? 0} of ${plural(p.images, "image")} done ` : "no images yet ";
}
