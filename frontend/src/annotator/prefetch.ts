/**
 * Prefetch of the next image: while an annotator works on one image, the image the work queue
 * will most likely lease next is downloaded (file, decoded bitmap and embedding) in the
 * background, so "Next image" opens it at once.
 *
 * The queue (`POST /projects/{id}/next`) gives back the caller's own active lease first, so a
 * second lease cannot be taken ahead of time without changing the API. Instead the client asks
 * the image list for the queue's own order — `embedded` images first, then `in_progress`, then
 * `new`, each by id — and prefetches the first one that is not the current image. Asking for its
 * embedding also makes the worker compute it when it is missing (202 + Retry-After), which in turn
 * puts the image first in the queue's order. When the guess is wrong (another annotator leased
 * that image meanwhile), the next image loads the ordinary way.
 */
import type { ApiClient } from "../api/client";
import type { ImageInfo } from "../api/types";
import { fetchEmbedding, type Embedding, type EmbeddingProgress } from "../embedding";

export interface LoadedImage { image: ImageInfo; bitmap: ImageBitmap; embedding: Embedding }

/**
 * The queue's order of open images, as `backend/api/routes/work_queue.py` leases them, after the
 * images review sent back (which are `in_progress`; they come first).
 */
export const QUEUE_ORDER: readonly ImageInfo["status"][] = ["embedded", "in_progress", "new"];

/** The image the next lease will most likely hold, other than `currentId`; null when none is open. */
export async function predictNextImage(api: ApiClient, projectId: number, currentId: number | null): Promise<ImageInfo | null> {
  const reworked = await api.listImages(projectId, 0, 2, "in_progress", true);
  const first = reworked.items.find((i) => i.id !== currentId);
  if (first) return first;
  for (const status of QUEUE_ORDER) {
    const page = await api.listImages(projectId, 0, 2, status);
    // the queue leases images whose embedding failed last: not worth downloading ahead
    const hit = page.items.find((i) => i.id !== currentId && !i.error);
    if (hit) return hit;
  }
  return null;
}

/** Download an image's file (decoded to a bitmap) and its embedding, reporting the embedding's progress. */
export async function loadImageData(api: ApiClient, image: ImageInfo, onProgress?: (p: EmbeddingProgress) => void,
  signal?: AbortSignal): Promise<LoadedImage> {
  const [bitmap, embedding] = await Promise.all([
    api.raw(`/images/${image.id}/file`, { signal }).then((r) => r.blob()).then((b) => createImageBitmap(b)),
    fetchEmbedding(api, image.id, { onProgress, signal }),
  ]);
  return { image, bitmap, embedding };
}

export interface PrefetchState { imageId: number | null; ready: boolean; failed: string | null }

export class Prefetcher {
  private entry: { imageId: number; promise: Promise<LoadedImage>; controller: AbortController; listener: ((p: EmbeddingProgress) => void) | null } | null = null;
  /** what is prefetched now (for the status line and tests) */
  readonly state: PrefetchState = { imageId: null, ready: false, failed: null };

  constructor(private api: ApiClient, private projectId: number) {}

  /** Guess the next image after `currentId` and start downloading it; resolves when the guess is made. */
  async start(currentId: number | null): Promise<void> {
    let next: ImageInfo | null;
    try {
      next = await predictNextImage(this.api, this.projectId, currentId);
    } catch {
      return; // a prefetch is only an optimisation: the next image will load the ordinary way
    }
    if (this.entry && this.entry.imageId === next?.id) return;
    this.cancel();
    if (!next) return;
    const controller = new AbortController();
    const entry: NonNullable<Prefetcher["entry"]> = { imageId: next.id, controller, listener: null, promise: Promise.resolve(null as never) };
    Object.assign(this.state, { imageId: next.id, ready: false, failed: null });
    entry.promise = loadImageData(this.api, next, (p) => entry.listener?.(p), controller.signal);
    this.entry = entry;
    entry.promise.then(
      () => { if (this.entry === entry) this.state.ready = true; },
      (err: Error) => { if (this.entry === entry) { this.state.failed = err.message; this.entry = null; } },
    );
  }

  /**
   * The prefetched data of `imageId` (finished or still downloading; `onProgress` then reports
   * the rest), or null when something else was prefetched. The entry is handed over, not kept.
   */
  take(imageId: number, onProgress?: (p: EmbeddingProgress) => void): Promise<LoadedImage> | null {
    const e = this.entry;
    if (!e || e.imageId !== imageId) return null;
    e.listener = onProgress ?? null;
    this.entry = null;
    return e.promise;
  }

  cancel(): void {
    this.entry?.controller.abort();
    this.entry = null;
    Object.assign(this.state, { imageId: null, ready: false, failed: null });
  }
}
