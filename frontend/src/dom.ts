/** Tiny DOM helpers: element construction and plain-words status messages. */

type Attrs = Record<string, string | number | boolean | ((e: Event) => void) | undefined>;
type Child = Node | string | null | undefined | false;

/** Create an element: `h("button", { onclick: fn, class: "x" }, "Save")`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** Replace the children of `el`. */
export function mount(el: HTMLElement, ...children: Child[]): void {
  el.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}

/** A status line element whose text and tone can be updated. */
export type StatusLine = HTMLElement & { say: (text: string, tone?: "info" | "error" | "ok") => void };

export function statusLine(id = "status"): StatusLine {
  const el = h("p", { id, class: "status", role: "status" });
  const say = (text: string, tone: "info" | "error" | "ok" = "info"): void => {
    el.textContent = text;
    el.title = text;
    el.dataset.tone = tone;
  };
  return Object.assign(el, { say });
}

/** "1 image", "3 images": a count with its noun. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The message of any thrown value. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
