/** Entry point: a tiny path router over the pages, with 401 → login (the outbox is kept). */
import "./style.css";
import { adminHome, adminProject } from "./pages/admin";
import { annotatorPage } from "./pages/annotator";
import { loginPage } from "./pages/login";
import { projectsPage } from "./pages/projects";
import { reviewPage } from "./pages/review";
import { api, clearSession, currentUser } from "./session";

const root = document.getElementById("app")!;

function go(path: string): void {
  if (location.pathname !== path) history.pushState(null, "", path);
  route();
}

function route(notice = ""): void {
  const path = location.pathname;
  const user = currentUser();
  if (!user || path === "/login") {
    // a page opened without a login (a bookmark, a link) is where the login goes back to
    if (path !== "/login") {
      sessionStorage.setItem("maskloop.returnTo", path);
      history.replaceState(null, "", "/login");
    }
    loginPage(root, go, notice);
    return;
  }
  let m: RegExpExecArray | null;
  if ((m = /^\/annotate\/(\d+)(?:\/image\/(\d+))?$/.exec(path))) void annotatorPage(root, Number(m[1]), go, m[2] ? Number(m[2]) : null);
  else if (path === "/admin" && user.role === "admin") void adminHome(root, go);
  else if ((m = /^\/admin\/(\d+)$/.exec(path)) && user.role === "admin") void adminProject(root, Number(m[1]), go);
  else if ((m = /^\/review\/(\d+)$/.exec(path)) && user.role === "admin") void reviewPage(root, Number(m[1]), go);
  else {
    if (path !== "/projects") history.replaceState(null, "", "/projects");
    void projectsPage(root, go);
  }
}

api.onUnauthorized = () => {
  if (!currentUser()) return; // a failed login attempt: the login page shows the error itself
  clearSession();
  if (location.pathname !== "/login") sessionStorage.setItem("maskloop.returnTo", location.pathname);
  history.replaceState(null, "", "/login");
  route("Your login has expired; please log in again. Accepted masks not yet saved are kept and will be sent.");
};

document.addEventListener("click", (e) => {
  const a = (e.target as HTMLElement).closest("a[data-nav]") as HTMLAnchorElement | null;
  if (a) { e.preventDefault(); go(a.pathname); }
});
window.addEventListener("popstate", () => route());
route();
