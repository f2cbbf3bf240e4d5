/** The project list: open the annotator, or (admins) the admin console of a project. */
import { errorText, h, mount, statusLine } from "../dom";
import { api, currentUser } from "../session";

export async function projectsPage(root: HTMLElement, go: (path: string) => void): Promise<void> {
  const status = statusLine();
  const list = h("ul", { id: "projects" });
  const admin = currentUser()?.role === "admin";
  mount(root, h("h1", {}, "Projects"), admin ? h("p", {}, h("a", { href: "/admin", "data-nav": "1" }, "Admin console")) : null, list, status);
  try {
    const projects = await api.listProjects();
    if (!projects.length) status.say(admin ? "No projects yet: create one in the admin console." : "You are not a member of any project yet.");
    mount(list, ...projects.map((p) => h("li", {},
      h("strong", {}, p.name), ` (${p.stage}) `,
      h("button", { class: "annotate", "data-project-id": p.id, onclick: () => go(`/annotate/${p.id}`) }, "Annotate"),
      admin ? h("button", { onclick: () => go(`/admin/${p.id}`) }, "Manage") : null)));
  } catch (err) {
    status.say(errorText(err), "error");
  }
}
