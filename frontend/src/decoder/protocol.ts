/** Typed messages between the page and the decoder Web Worker; every request carries an id. */
import type { RefineParams } from "./refine";

export interface PromptPoint { x: number; y: number; /** 1 positive, 0 negative */ label: 0 | 1 }
export interface PromptBox { x0: number; y0: number; x1: number; y1: number }
export interface Prompt { points: PromptPoint[]; box: PromptBox | null }

export type DecoderRequest =
  | { id: number; type: "init"; modelUrl: string; multimaskUrl: string | null; numThreads: number; wasmPaths: string }
  | {
      id: number; type: "setEmbedding"; key: string; data: Float32Array; shape: number[];
      origSize: [number, number]; inputSize: [number, number];
      /** the image's RGBA pixels (orig size) and how to refine masks with them; null: plain threshold */
      guide: { rgba: Uint8ClampedArray; params: RefineParams } | null;
    }
  | {
      id: number; type: "decode"; key: string; prompt: Prompt;
      /** previous 1×1×256×256 low-res logits, or null on the first click */
      maskInput: Float32Array | null; multimask: boolean;
      /**
       * answer with the decoder's own masks at once (all `refined` false, the logits held) and leave
       * the refinement to a `refineCandidate` request, so the page can draw the mask before it is
       * refined; ignored when a first click's candidates are ranked by their refined IoU
       */
      deferRefine?: boolean;
    }
  | {
      /** refine a candidate the worker left unrefined (`DecodedMask.refined` false) */
      id: number; type: "refineCandidate"; key: string; decodeId: number; index: number;
    }
  | {
      /** refine masks with the image (when the page sent it) or return the decoder's own masks */
      id: number; type: "setRefine"; enabled: boolean;
    };

export interface DecodedMask {
  /** row-major H×W, 1 inside (H, W = orig size) */
  mask: Uint8Array;
  /** 256×256 logits to feed back as mask_input */
  lowRes: Float32Array;
  /**
   * predicted IoU: the decoder's, or for a first click's candidates ranked by the refined-candidate
   * rule (`RefineParams.select` "refined"), that of the refined mask (`refinedIou`)
   */
  iou: number;
  /** the worker's request id of the decode and this candidate's index in its output */
  decodeId: number;
  index: number;
  /**
   * false for the other candidates of a multimask decode when masks are refined and ranked by the
   * decoder's IoU (`select` "head"): only the best is refined at once, the others on demand
   * (`DecoderClient.refineCandidate`); false for every mask of a decode asked with `deferRefine`
   */
  refined: boolean;
  /** set by the page's client when it had the mask refined on demand: that refinement's time (ms) */
  refineMs?: number;
}

/** Where a decode's time went inside the worker (milliseconds). */
export interface DecodeTimings {
  /** onnxruntime-web `session.run()` */
  run: number;
  /** thresholding (or refining) the logits and copying the outputs for transfer */
  post: number;
  /** of `post`, the edge-aware refinement (0 without it) */
  refine: number;
}

export type DecoderResponse =
  | { id: number; type: "ready"; multimask: boolean; threads: number }
  | { id: number; type: "embeddingSet" }
  | { id: number; type: "refineSet"; enabled: boolean }
  | {
      id: number; type: "decoded";
      /** candidates in the decoder's order (use `sortByIou` to show the best first) */
      masks: DecodedMask[]; width: number; height: number; ms: number; timings: DecodeTimings;
    }
  | { id: number; type: "refinedMask"; mask: Uint8Array; ms: number }
  | { id: number; type: "error"; message: string };
