"""Project metrics: per stage, per round and per annotator, plus model metrics per version."""
from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter
from sqlalchemy import func, or_, select

from backend.api.deps import CurrentUser, SessionDep, project_for_user
from backend.db.models import Annotation, Image, ModelVersion, ProposalRejection, Round, User

router = APIRouter(tags=["metrics"])
HUMAN = ("manual", "assisted", "semi_auto_accepted")


def _summary(rows: list[Annotation], n_images: int) -> dict:
    human = [a for a in rows if a.source in HUMAN]
    secs = [a.seconds for a in human if a.seconds is not None]
    clicks = [a.clicks for a in human if a.clicks is not None and a.source != "semi_auto_accepted"]
    return {
        "masks": len(rows), "human_masks": len(human), "images": n_images,
        "masks_per_image": len(rows) / n_images if n_images else None,
        "seconds_per_mask": sum(secs) / len(secs) if secs else None,
        "clicks_per_mask": sum(clicks) / len(clicks) if clicks else None,
        "by_source": {s: sum(1 for a in rows if a.source == s) for s in sorted({a.source for a in rows})},
    }


def _review_counts(rows: list[Annotation]) -> dict[str, int]:
    counts = {"pending": 0, "accepted": 0, "rejected": 0}
    for a in rows:
        counts[a.review_state] = counts.get(a.review_state, 0) + 1
    return counts


@router.get("/projects/{project_id}/metrics")
def project_metrics(project_id: int, session: SessionDep, user: CurrentUser) -> dict:
    project = project_for_user(session, project_id, user)
    rows = list(session.scalars(select(Annotation).join(Image, Image.id == Annotation.image_id)
                                .where(Image.project_id == project.id).order_by(Annotation.created_at)))
    per_stage: dict[str, list[Annotation]] = defaultdict(list)
    for a in rows:
        per_stage[a.stage].append(a)
    stages = {stage: _summary(items, len({a.image_id for a in items})) for stage, items in per_stage.items()}
    # the annotators' verdict on the model's proposals: accepted as they are, or rejected (or fixed)
    rejected: dict[str, int] = defaultdict(int)
    for stage in session.scalars(select(ProposalRejection.stage).join(Image, Image.id == ProposalRejection.image_id)
                                 .where(Image.project_id == project.id)):
        rejected[stage] += 1
    for stage in set(stages) | set(rejected):
        summary = stages.setdefault(stage, _summary([], 0))
        accepted = summary["by_source"].get("semi_auto_accepted", 0)
        decided = accepted + rejected[stage]
        summary.update(proposals_accepted=accepted, proposals_rejected=rejected[stage],
                       proposal_accept_share=accepted / decided if decided else None)

    # Per model version (the model that helped annotate): the effect of each round.
    per_version: dict[int | None, list[Annotation]] = defaultdict(list)
    for a in rows:
        per_version[a.model_version_id].append(a)
    by_model = {str(k): _summary(v, len({a.image_id for a in v})) for k, v in per_version.items()}

    # Per annotator: masks per hour of annotation time, effort per mask, and what review made of their masks.
    names = dict(session.execute(select(User.id, User.username)).all())
    per_user: dict[int, list[Annotation]] = defaultdict(list)
    for a in rows:
        if a.annotator_id is not None and a.source in HUMAN:
            per_user[a.annotator_id].append(a)
    annotators = []
    for uid, items in sorted(per_user.items()):
        seconds = sum(a.seconds or 0.0 for a in items)
        reviewed = _review_counts(items)
        decided = reviewed["accepted"] + reviewed["rejected"]
        effort = _summary(items, 0)
        annotators.append({"user_id": uid, "username": names.get(uid), "masks": len(items),
                           "seconds": seconds, "masks_per_hour": 3600 * len(items) / seconds if seconds else None,
                           "seconds_per_mask": effort["seconds_per_mask"], "clicks_per_mask": effort["clicks_per_mask"],
                           "review": reviewed,
                           "review_rejected_share": reviewed["rejected"] / decided if decided else None})
    statuses = dict(session.execute(select(Image.status, func.count()).where(Image.project_id == project.id)
                                    .group_by(Image.status)).all())
    # sent back by review (a note or a rejected mask) and not submitted again yet
    rejected_on = select(Annotation.image_id).where(Annotation.review_state == "rejected")
    sent_back = session.scalar(select(func.count()).select_from(Image).where(
        Image.project_id == project.id, Image.status.not_in(("done", "reviewed")),
        or_(Image.review_note.is_not(None), Image.id.in_(rejected_on)))) or 0
    review = {"images_to_review": statuses.get("done", 0), "images_reviewed": statuses.get("reviewed", 0),
              "images_sent_back": sent_back, "masks": _review_counts(rows)}

    # Over time: daily buckets of seconds and clicks per mask.
    daily: dict[str, list[Annotation]] = defaultdict(list)
    for a in rows:
        daily[a.created_at.strftime("%Y-%m-%d")].append(a)
    timeline = [{"day": d, **_summary(items, len({a.image_id for a in items}))} for d, items in sorted(daily.items())]

    rounds = [{"id": r.id, "status": r.status, "n_annotations": r.n_annotations,
               "base_model_version_id": r.base_model_version_id, "model_version_id": r.model_version_id,
               "metrics_before": r.metrics_before, "metrics_after": r.metrics_after}
              for r in session.scalars(select(Round).where(Round.project_id == project.id).order_by(Round.id))]
    versions = {r["model_version_id"] for r in rounds} | {r["base_model_version_id"] for r in rounds}
    versions.add(project.active_model_version_id)
    models = [{"id": mv.id, "name": mv.name, "metrics": mv.metrics}
              for mv in session.scalars(select(ModelVersion).where(ModelVersion.id.in_([v for v in versions if v])))]
    return {"project_id": project.id, "stage": project.stage, "stages": stages, "by_model_version": by_model,
            "annotators": annotators, "review": review, "timeline": timeline, "rounds": rounds, "models": models}
