/**
 * The autosave outbox: every accepted mask is written to localStorage before it is POSTed and
 * removed only once the server has stored it. Retries are safe because each entry carries a
 * `client_uid` the server uses to recognise a repeat. A reload, a lost network or an expired
 * login loses nothing accepted. A mask the server refuses for good (say its label was deleted
 * meanwhile) moves to a second list, kept across reloads until the annotator retries it (with
 * another label) or discards it.
 */
import { ApiError, type ApiClient } from "../api/client";
import type { Annotation, AnnotationCreate } from "../api/types";

const KEY = "maskloop.outbox";
const REFUSED_KEY = "maskloop.refused";

export interface OutboxEntry { imageId: number; body: AnnotationCreate & { client_uid: string }; queuedAt: number }

export interface RefusedEntry extends OutboxEntry { error: string }

function readList<T>(key: string): T[] {
  try {
    const raw = localStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T[]) : [];
  } catch {
    return [];
  }
}

export function readOutbox(): OutboxEntry[] {
  return readList<OutboxEntry>(KEY);
}

function writeOutbox(entries: OutboxEntry[]): void {
  localStorage.setItem(KEY, JSON.stringify(entries));
}

/** Masks the server refused for good, with its reason. */
export function readRefused(): RefusedEntry[] {
  return readList<RefusedEntry>(REFUSED_KEY);
}

function writeRefused(entries: RefusedEntry[]): void {
  localStorage.setItem(REFUSED_KEY, JSON.stringify(entries));
}

/** Send a refused mask again (optionally with another label); false when it is not in the list. */
export function retryRefused(uid: string, labelId?: number): boolean {
  const entry = readRefused().find((e) => e.body.client_uid === uid);
  if (!entry) return false;
  writeOutbox([...readOutbox(), { imageId: entry.imageId, queuedAt: Date.now(),
    body: { ...entry.body, ...(labelId ? { label_id: labelId } : {}) } }]);
  writeRefused(readRefused().filter((e) => e.body.client_uid !== uid));
  return true;
}

/** Forget a refused mask (the annotator chose to). */
export function discardRefused(uid: string): void {
  writeRefused(readRefused().filter((e) => e.body.client_uid !== uid));
}

export function enqueue(imageId: number, body: AnnotationCreate & { client_uid: string }): OutboxEntry {
  const entry: OutboxEntry = { imageId, body, queuedAt: Date.now() };
  writeOutbox([...readOutbox(), entry]);
  return entry;
}

function remove(uid: string): void {
  writeOutbox(readOutbox().filter((e) => e.body.client_uid !== uid));
}

/**
 * Take back an entry the server has not stored (an accept undone while offline, or while the
 * server refuses it): out of the outbox or the refused list; false when it is in neither.
 */
export function dropFromOutbox(uid: string): boolean {
  const queued = readOutbox().some((e) => e.body.client_uid === uid);
  const refused = readRefused().some((e) => e.body.client_uid === uid);
  if (queued) remove(uid);
  if (refused) discardRefused(uid);
  return queued || refused;
}

export interface FlushResult {
  saved: { entry: OutboxEntry; annotation: Annotation }[];
  rejected: { entry: OutboxEntry; error: string }[];
  pending: number;
  lastError: string | null;
}

let flushing: Promise<FlushResult> | null = null;

/**
 * POST every entry (one flush at a time). Saved ones leave the outbox; ones the server refuses for
 * good (4xx other than 401/408/429) move to the refused list and are reported, so one bad mask
 * cannot block the rest and none is lost; network errors, 5xx and 401 keep them for the next try.
 */
export function flushOutbox(api: ApiClient): Promise<FlushResult> {
  flushing ??= doFlush(api).finally(() => { flushing = null; });
  return flushing;
}

async function doFlush(api: ApiClient): Promise<FlushResult> {
  const out: FlushResult = { saved: [], rejected: [], pending: 0, lastError: null };
  for (const entry of readOutbox()) {
    try {
      const annotation = await api.createAnnotation(entry.imageId, entry.body);
      remove(entry.body.client_uid);
      out.saved.push({ entry, annotation });
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 0;
      const message = err instanceof Error ? err.message : String(err);
      if (status >= 400 && status < 500 && ![401, 408, 429].includes(status)) {
        writeRefused([...readRefused().filter((e) => e.body.client_uid !== entry.body.client_uid), { ...entry, error: message }]);
        remove(entry.body.client_uid);
        out.rejected.push({ entry, error: message });
      } else {
        out.lastError = message;
        if (status === 401) break;
      }
    }
  }
  out.pending = readOutbox().length;
  return out;
}

export function newClientUid(): string {
  return typeof crypto.randomUUID === "function" ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
