/** The login page: POST /auth/login, keep the bearer token in localStorage. */
import { errorText, h, mount, statusLine } from "../dom";
import { api, saveSession } from "../session";

export function loginPage(root: HTMLElement, go: (path: string) => void, notice = ""): void {
  const status = statusLine();
  if (notice) status.say(notice, "error");
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "login" },
    h("h1", {}, "Maskloop"), h("label", {}, "Username ", user), h("label", {}, "Password ", pass),
    h("button", { type: "submit" }, "Log in"), status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.say("Logging in…");
    try {
      const r = await api.login(user.value, pass.value);
      saveSession(r.access_token, r.user);
      const back = sessionStorage.getItem("maskloop.returnTo");
      sessionStorage.removeItem("maskloop.returnTo");
      go(back && back !== "/login" ? back : "/projects");
    } catch (err) {
      status.say(errorText(err), "error");
    }
  });
  mount(root, form);
  user.focus();
}
