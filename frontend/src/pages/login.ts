/** The login page: POST /auth/login, keep the bearer token in localStorage. */
import { errorText, h, mount, statusLine } from "../dom";
import { api, clearSession, saveSession } from "../session";

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
    // a login kept from before is dropped first: its token would make a refused login look like an
    // expired session (the app's 401 handler), which wiped this form and hid the server's reason
    clearSession();
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
