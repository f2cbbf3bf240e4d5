/**
 * The admin's list of a project's images: thumbnail, name, size, status (with the reason when an
 * image cannot be used), number of annotations, and "Open", which leases that very image in the
 * annotator (to annotate it out of turn or to correct a finished one), and "Delete" (after a confirm).
 * Filtered by status, 50 a page.
 */
import type { ImageInfo } from "../api/types";
import { errorText, h, mount, plural } from "../dom";
import { api } from "../session";

const PAGE = 50;
const STATUSES: ImageInfo["status"][] = ["new", "embedded", "in_progress", "done", "reviewed"];

export interface ImageBrowser {
  el: HTMLElement;
  /** fetch the current page again (after an upload, or while jobs run) */
  reload(): Promise<void>;
}

export function imageBrowser(projectId: number, go: (path: string) => void,
  say: (text: string, tone: "info" | "error" | "ok") => void): ImageBrowser {
  let offset = 0;
  const filter = h("select", { id: "images-status", "aria-label": "status",
    onchange: () => { offset = 0; void reload(); } },
  h("option", { value: "" }, "all statuses"), ...STATUSES.map((s) => h("option", { value: s }, s))) as HTMLSelectElement;
  const info = h("span", { id: "images-count" });
  const prev = h("button", { id: "images-prev", onclick: () => { offset = Math.max(0, offset - PAGE); void reload(); } }, "◀ previous");
  const next = h("button", { id: "images-next", onclick: () => { offset += PAGE; void reload(); } }, "next ▶");
  const table = h("div", { id: "images-list" });
  // thumbnails come with the login token, so they are fetched and kept as object URLs for the page's life
  const thumbs = new Map<number, Promise<string>>();
  const thumb = (id: number): HTMLImageElement => {
    const img = h("img", { class: "thumb", alt: "" }) as HTMLImageElement;
    if (!thumbs.has(id)) thumbs.set(id, api.thumbnailBlob(id).then((b) => URL.createObjectURL(b)));
    thumbs.get(id)!.then((url) => { img.src = url; }, () => { img.alt = "no thumbnail"; });
    return img;
  };

  async function remove(im: ImageInfo): Promise<void> {
    const n = im.annotations ?? 0;
    if (!window.confirm(`Delete image ${im.file_name}${n ? ` and its ${plural(n, "annotation")}` : ""}? This cannot be undone.`)) return;
    try {
      await api.deleteImage(im.id);
      say(`Image ${im.file_name} deleted.`, "ok");
    } catch (err) {
      say(`Image ${im.file_name} was not deleted: ${errorText(err)}`, "error");
    }
    await reload();
  }

  async function reload(): Promise<void> {
    try {
      const status = (filter.value || undefined) as ImageInfo["status"] | undefined;
      const page = await api.listImages(projectId, offset, PAGE, status);
      if (!page.items.length && offset > 0 && page.total > 0) { // the list shrank under this page
        offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
        return reload();
      }
      info.textContent = page.total
        ? ` images ${offset + 1}–${offset + page.items.length} of ${page.total} `
        : " no images" + (status ? ` with status ${status}` : "") + " ";
      (prev as HTMLButtonElement).disabled = offset === 0;
      (next as HTMLButtonElement).disabled = offset + page.items.length >= page.total;
      mount(table, page.items.length ? h("table", {},
        h("tr", {}, ...["", "id", "file", "size", "status", "annotations", ""].map((t) => h("th", {}, t))),
        ...page.items.map((im) => h("tr", { "data-image-id": im.id },
          h("td", {}, thumb(im.id)), h("td", {}, String(im.id)), h("td", {}, im.file_name),
          h("td", {}, `${im.width}×${im.height}`),
          h("td", {}, im.status, im.error ? h("div", { class: "image-error" }, im.error) : null),
          h("td", {}, String(im.annotations ?? "")),
          h("td", {}, h("button", { class: "open-image", title: "open this image in the annotator",
            onclick: () => go(`/annotate/${projectId}/image/${im.id}`) }, "Open"),
          h("button", { class: "delete-image", title: "delete this image and its annotations",
            onclick: () => void remove(im) }, "Delete"))))) : "");
    } catch (err) {
      mount(table, h("p", { class: "status", "data-tone": "error" }, `The image list could not be loaded: ${errorText(err)}`));
    }
  }

  return { el: h("div", { class: "image-browser" }, h("div", {}, filter, info, prev, next), table), reload };
}
