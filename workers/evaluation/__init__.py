"""Interactive evaluation of segmentation models (robot clicker, NoC/mIoU) and the GrabCut baseline."""
from workers.evaluation.clicker import Click, iou, next_click
from workers.evaluation.grabcut import GrabCutSegmenter
from workers.evaluation.interactive import evaluate, evaluate_model, run_sample
from workers.evaluation.metrics import clicks_to_reach, summarize

__all__ = ["Click", "GrabCutSegmenter", "clicks_to_reach", "evaluate", "evaluate_model", "iou", "next_click",
           "run_sample", "summarize"]
