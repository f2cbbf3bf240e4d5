/**
 * Typed client of the Maskloop REST API (`/api/v1`, docs/api.md). Errors come back as
 * `ApiError` carrying the HTTP status and the server's plain-words `detail`.
 */
import type {
  Annotation, AnnotationCreate, ImageInfo, Job, Label, Lease, LoginResponse, ModelVersion, Project, Rejection, Round,
  Stage, UploadResult, User,
} from "./types";

export class ApiError extends Error {
  constructor(public readonly status: number, public readonly detail: string, public readonly code?: string) {
    super(status === 0 ? detail : `${detail} (HTTP ${status})`);
    this.name = "ApiError";
  }
  /** True when the request never reached the server (offline, server down). */
  get isNetwork(): boolean { return this.status === 0; }
}

type Json = Record<string, unknown> | unknown[];

export class ApiClient {
  /** Called on any 401, so the app can send the user back to the login page. */
  onUnauthorized: (() => void) | null = null;

  constructor(public base = "/api/v1", public token: string | null = null) {}

  /** A fetch with auth; throws ApiError on network failures and on 4xx/5xx. Returns 2xx/3xx responses. */
  async raw(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.token) headers.set("Authorization", `Bearer ${this.token}`);
    let res: Response;
    try {
      res = await fetch(this.base + path, { ...init, headers });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new ApiError(0, `cannot reach the server (${(err as Error).message})`);
    }
    if (res.status >= 400) {
      let detail = res.statusText || "request failed";
      let code: string | undefined;
      try {
        const body = (await res.json()) as { detail?: unknown; code?: string };
        if (typeof body.detail === "string") detail = body.detail;
        else if (body.detail) detail = JSON.stringify(body.detail);
        code = body.code;
      } catch { /* not JSON: keep the status text */ }
      if (res.status === 401) this.onUnauthorized?.();
      throw new ApiError(res.status, detail, code);
    }
    return res;
  }

  async json<T>(method: string, path: string, body?: Json): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    const res = await this.raw(path, init);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  // auth and users
  async login(username: string, password: string): Promise<LoginResponse> {
    const out = await this.json<LoginResponse>("POST", "/auth/login", { username, password });
    this.token = out.access_token;
    return out;
  }
  me(): Promise<User> { return this.json("GET", "/users/me"); }
  listUsers(): Promise<User[]> { return this.json("GET", "/users"); }
  createUser(username: string, password: string, role: User["role"]): Promise<User> {
    return this.json("POST", "/users", { username, password, role });
  }

  // projects
  listProjects(): Promise<Project[]> { return this.json("GET", "/projects"); }
  getProject(id: number): Promise<Project> { return this.json("GET", `/projects/${id}`); }
  createProject(name: string, labels: { name: string; color: string }[], stage?: Stage): Promise<Project> {
    return this.json("POST", "/projects", stage ? { name, labels, stage } : { name, labels });
  }
  /** admins: the project with its images and annotations; 409 while a job or round of it runs */
  deleteProject(id: number): Promise<void> { return this.json("DELETE", `/projects/${id}`); }
  updateProject(id: number, patch: { name?: string; stage?: Stage; instructions?: string }): Promise<Project> {
    return this.json("PATCH", `/projects/${id}`, patch);
  }
  addLabel(projectId: number, name: string, color: string): Promise<Label> {
    return this.json("POST", `/projects/${projectId}/labels`, { name, color });
  }
  updateLabel(id: number, patch: { name?: string; color?: string }): Promise<Label> {
    return this.json("PATCH", `/labels/${id}`, patch);
  }
  deleteLabel(id: number): Promise<void> { return this.json("DELETE", `/labels/${id}`); }
  addMember(projectId: number, userId: number): Promise<Project> {
    return this.json("POST", `/projects/${projectId}/members`, { user_id: userId });
  }
  removeMember(projectId: number, userId: number): Promise<Project> {
    return this.json("DELETE", `/projects/${projectId}/members/${userId}`);
  }
  progress(projectId: number): Promise<Record<string, unknown>> { return this.json("GET", `/projects/${projectId}/progress`); }
  metrics(projectId: number): Promise<Record<string, unknown>> { return this.json("GET", `/projects/${projectId}/metrics`); }
  setActiveModel(projectId: number, modelVersionId: number): Promise<Project> {
    return this.json("POST", `/projects/${projectId}/active-model`, { model_version_id: modelVersionId });
  }

  // images
  async uploadImages(projectId: number, files: File[]): Promise<UploadResult> {
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const res = await this.raw(`/projects/${projectId}/images`, { method: "POST", body: form });
    return (await res.json()) as UploadResult;
  }
  importFolder(projectId: number, path: string): Promise<unknown> {
    return this.json("POST", `/projects/${projectId}/images/import-folder`, { path });
  }
  /** `sentBack`: only images review sent back (true) or only the others (false) */
  listImages(projectId: number, offset = 0, limit = 50, status?: ImageInfo["status"], sentBack?: boolean): Promise<{ items: ImageInfo[]; total: number }> {
    return this.json("GET", `/projects/${projectId}/images?offset=${offset}&limit=${limit}${status ? `&status=${status}` : ""}`
      + (sentBack === undefined ? "" : `&sent_back=${sentBack}`));
  }
  getImage(id: number): Promise<ImageInfo> { return this.json("GET", `/images/${id}`); }
  async imageBlob(id: number): Promise<Blob> { return (await this.raw(`/images/${id}/file`)).blob(); }
  async thumbnailBlob(id: number): Promise<Blob> { return (await this.raw(`/images/${id}/thumbnail`)).blob(); }
  /** a lease on this image itself (picked from the project's list); 409 when another annotator holds it */
  leaseImage(id: number): Promise<Lease> { return this.json("POST", `/images/${id}/lease`); }
  /** admins: the image and everything on it; 409 while it is leased by someone or model work runs */
  deleteImage(id: number): Promise<void> { return this.json("DELETE", `/images/${id}`); }

  // annotations
  listAnnotations(imageId: number): Promise<Annotation[]> { return this.json("GET", `/images/${imageId}/annotations`); }
  createAnnotation(imageId: number, body: AnnotationCreate): Promise<Annotation> {
    return this.json("POST", `/images/${imageId}/annotations`, body as unknown as Json);
  }
  updateAnnotation(id: number, patch: { label_id?: number; segmentation?: Annotation["segmentation"]; source?: string; seconds?: number; clicks?: number }): Promise<Annotation> {
    return this.json("PATCH", `/annotations/${id}`, patch as Json);
  }
  deleteAnnotation(id: number): Promise<void> { return this.json("DELETE", `/annotations/${id}`); }
  /** Reject a model proposal (semi_auto/automatic): it leaves the image but can be restored. */
  rejectAnnotation(id: number): Promise<Rejection> { return this.json("POST", `/annotations/${id}/reject`); }
  /** Reject many proposals of one image in one request: the listed ones, else all; with `below_object_score`, only lower-scored ones. */
  rejectProposals(imageId: number, body: { annotation_ids?: number[]; below_object_score?: number } = {}): Promise<Rejection[]> {
    return this.json("POST", `/images/${imageId}/proposals/reject`, body as Json);
  }
  /** Bring a rejected proposal back (same id); only who rejected it, or an admin. */
  restoreRejection(rejectionId: number): Promise<Annotation> { return this.json("POST", `/rejections/${rejectionId}/restore`); }
  review(id: number, decision: "accept" | "reject"): Promise<Annotation> {
    return this.json("POST", `/annotations/${id}/review`, { decision });
  }
  /** admins: approve a submitted image (every mask accepted) or send it back with a note and the wrong masks */
  reviewImage(imageId: number, decision: "approve" | "reject", note: string | null = null, rejected: number[] = []): Promise<ImageInfo> {
    return this.json("POST", `/images/${imageId}/review`, { decision, note, rejected });
  }

  // work queue
  async next(projectId: number): Promise<Lease | null> {
    const res = await this.raw(`/projects/${projectId}/next`, { method: "POST" });
    return res.status === 204 ? null : ((await res.json()) as Lease);
  }
  renewLease(id: number): Promise<Lease> { return this.json("POST", `/leases/${id}/renew`); }
  submitLease(id: number): Promise<ImageInfo> { return this.json("POST", `/leases/${id}/submit`); }
  releaseLease(id: number, skip = false): Promise<void> { return this.json("POST", `/leases/${id}/release${skip ? "?skip=true" : ""}`); }

  // models, rounds, jobs
  listModels(): Promise<ModelVersion[]> { return this.json("GET", "/models"); }
  getModel(id: number): Promise<ModelVersion> { return this.json("GET", `/models/${id}`); }
  decoderUrl(modelVersionId: number, multimask: boolean): string {
    return `${this.base}/models/${modelVersionId}/${multimask ? "decoder_multimask" : "decoder"}.onnx`;
  }
  startRound(projectId: number, body: { steps?: number; freeze_image_encoder?: boolean; learning_rate?: number; time_budget_seconds?: number }): Promise<Round> {
    return this.json("POST", `/projects/${projectId}/rounds`, body);
  }
  listRounds(projectId: number): Promise<Round[]> { return this.json("GET", `/projects/${projectId}/rounds`); }
  promoteRound(id: number): Promise<Round> { return this.json("POST", `/rounds/${id}/promote`); }
  discardRound(id: number): Promise<Round> { return this.json("POST", `/rounds/${id}/discard`); }
  cancelRound(id: number): Promise<Round> { return this.json("POST", `/rounds/${id}/cancel`); }
  /** admins: stop a queued or running job (409 once it has ended) */
  cancelJob(id: number): Promise<Job> { return this.json("POST", `/jobs/${id}/cancel`); }
  startJob(projectId: number, kind: "prefill" | "automatic", body: Record<string, number | boolean> = {}): Promise<Job> {
    return this.json("POST", `/projects/${projectId}/${kind}`, body);
  }
  listJobs(projectId: number): Promise<Job[]> { return this.json("GET", `/projects/${projectId}/jobs`); }
  exportUrl(projectId: number, format: "coco" | "sa1b"): string { return `${this.base}/projects/${projectId}/export?format=${format}`; }
}
