/** Types of the REST API contract (docs/api.md), as the backend's pydantic schemas return them. */
import type { RefineParams } from "../decoder/refine";

export type Role = "admin" | "annotator";
export type Stage = "assisted_manual" | "semi_automatic" | "fully_automatic";
export type Source = "manual" | "assisted" | "semi_auto" | "semi_auto_accepted" | "automatic";
export type ReviewState = "pending" | "accepted" | "rejected";

export interface User { id: number; username: string; role: Role; is_active: boolean }
export interface LoginResponse { access_token: string; token_type: "bearer"; user: User }
export interface Label { id: number; name: string; color: string }
export interface Project {
  id: number; name: string; stage: Stage; active_model_version_id: number | null;
  labels: Label[]; member_ids: number[]; created_at: string;
  /** the annotation guidelines annotators read beside the image */
  instructions?: string | null;
  /** the project list only: its images, and those submitted or reviewed */
  images?: number | null; images_done?: number | null;
}
export interface ImageInfo {
  id: number; project_id: number; file_name: string; width: number; height: number; sha256: string;
  status: "new" | "embedded" | "in_progress" | "done" | "reviewed"; created_at: string;
  /** why the image cannot be used (e.g. its embedding failed), if so */
  error?: string | null;
  /** the number of its annotations (the project's image list only) */
  annotations?: number | null;
  /** what a reviewer said when sending it back to the annotators (null once approved) */
  review_note?: string | null;
}
export interface UploadResult { created: ImageInfo[]; duplicates: ImageInfo[]; errors: { filename: string; detail: string }[] }
export interface Lease { lease_id: number; image: ImageInfo; expires_at: string }
export interface Segmentation { size: [number, number]; counts: string }
export interface Annotation {
  id: number; image_id: number; label_id: number | null; segmentation: Segmentation; bbox: number[]; area: number;
  source: Source; stage: Stage; model_version_id: number | null; annotator_id: number | null;
  seconds: number | null; clicks: number | null; predicted_iou: number | null; stability_score: number | null;
  object_score?: number | null;
  review_state: ReviewState; created_at: string; updated_at: string;
}
/** A rejected model proposal, kept by the server so that it can be restored (undo). */
export interface Rejection {
  id: number; annotation_id: number; image_id: number; rejected_by: number | null; stage: Stage; source: Source; created_at: string;
}
export interface AnnotationCreate {
  label_id: number; segmentation: Segmentation; source: Source; clicks?: number; seconds?: number;
  predicted_iou?: number; model_version_id?: number | null; client_uid?: string;
}
export interface ModelVersion {
  id: number; name: string; arch: string; parent_id: number | null; round_id: number | null;
  metrics: Record<string, unknown> | null; created_at: string; has_multimask_decoder?: boolean;
  /** how decoded masks are refined with the image (absent: plain threshold) */
  refine?: RefineParams | null;
}
export interface Round {
  id: number; project_id: number; status: "queued" | "running" | "succeeded" | "failed" | "promoted" | "discarded" | "cancelled";
  progress: number; message: string | null; error: string | null; n_annotations: number | null; n_images: number | null;
  base_model_version_id: number | null; model_version_id: number | null;
  metrics_before: Record<string, unknown> | null; metrics_after: Record<string, unknown> | null;
  created_at: string; finished_at: string | null;
}
export interface Job {
  id: number; kind: string; status: string; progress: number; done: number; total: number;
  message: string | null; error: string | null; created_at: string;
}
