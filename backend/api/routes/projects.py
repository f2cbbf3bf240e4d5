"""Projects, labels, members, stage and active model, progress."""
from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backend.api.deps import AdminUser, CurrentUser, SessionDep, StorageDep, project_for_user
from backend.core.errors import BadRequest, Conflict, NotFound
from backend.db.models import Annotation, Image, Label, ModelVersion, Project, ProjectMember, User
from backend.schemas.projects import (ActiveModel, LabelCreate, LabelPublic, LabelUpdate, MemberAdd, ProjectCreate,
                                      ProjectPublic, ProjectUpdate)
from backend.services.images import refuse_while_model_work_runs, remove_unshared_files, stored_files
from backend.services.model_registry import default_model_version_id

router = APIRouter(tags=["projects"])


def project_public(project: Project) -> ProjectPublic:
    return ProjectPublic(
        id=project.id, name=project.name, stage=project.stage,
        active_model_version_id=project.active_model_version_id,
        labels=[LabelPublic.model_validate(lab) for lab in project.labels],
        member_ids=sorted(m.user_id for m in project.members), instructions=project.instructions,
        created_at=project.created_at,
    )


@router.get("/projects", response_model=list[ProjectPublic])
def list_projects(session: SessionDep, user: CurrentUser) -> list[ProjectPublic]:
    query = select(Project).order_by(Project.id)
    if user.role != "admin":
        query = query.join(ProjectMember, ProjectMember.project_id == Project.id).where(
            ProjectMember.user_id == user.id)
    projects = [project_public(p) for p in session.scalars(query)]
    # how far each project is, in one grouped query (the projects page shows "N of M images done")
    counts: dict[int, dict[str, int]] = {}
    for project_id, status, n in session.execute(
            select(Image.project_id, Image.status, func.count()).where(Image.project_id.in_([p.id for p in projects]))
            .group_by(Image.project_id, Image.status)):
        counts.setdefault(project_id, {})[status] = n
    for p in projects:
        by_status = counts.get(p.id, {})
        p.images = sum(by_status.values())
        p.images_done = by_status.get("done", 0) + by_status.get("reviewed", 0)
    return projects


@router.post("/projects", response_model=ProjectPublic, status_code=201)
def create_project(body: ProjectCreate, session: SessionDep, _: AdminUser) -> ProjectPublic:
    names = [lab.name for lab in body.labels]
    if len(set(names)) != len(names):
        raise BadRequest("label names must be unique within a project")
    if session.scalar(select(Project.id).where(Project.name == body.name)) is not None:
        raise Conflict(f"a project named {body.name!r} already exists")
    project = Project(name=body.name, stage=body.stage, active_model_version_id=default_model_version_id(session),
                      instructions=(body.instructions or "").strip() or None)
    project.labels = [Label(name=lab.name, color=lab.color) for lab in body.labels]
    session.add(project)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a project named {body.name!r} already exists") from None
    return project_public(project)


@router.get("/projects/{project_id}", response_model=ProjectPublic)
def get_project(project_id: int, session: SessionDep, user: CurrentUser) -> ProjectPublic:
    return project_public(project_for_user(session, project_id, user))


@router.delete("/projects/{project_id}", status_code=204)
def delete_project(project_id: int, session: SessionDep, storage: StorageDep, admin: AdminUser) -> Response:
    """Remove a project with its images, annotations, labels, members, jobs and rounds (the model
    versions its rounds trained stay: other projects may use them). Refused (409) while a job or round
    of it runs. Stored image files go unless an image of another project has the same content."""
    project = project_for_user(session, project_id, admin)
    refuse_while_model_work_runs(session, project.id, "delete the project")
    files = stored_files(session, session.scalars(select(Image).where(Image.project_id == project.id)))
    session.execute(sa_delete(Project).where(Project.id == project.id))  # the rest cascades in the database
    session.commit()
    remove_unshared_files(session, storage, files)
    return Response(status_code=204)


@router.patch("/projects/{project_id}", response_model=ProjectPublic)
def update_project(project_id: int, body: ProjectUpdate, session: SessionDep, admin: AdminUser) -> ProjectPublic:
    project = project_for_user(session, project_id, admin)
    if body.name is not None and body.name != project.name:
        if session.scalar(select(Project.id).where(Project.name == body.name)) is not None:
            raise Conflict(f"a project named {body.name!r} already exists")
        project.name = body.name
    if body.stage is not None:
        project.stage = body.stage
    if body.instructions is not None:
        project.instructions = body.instructions.strip() or None
    session.commit()
    return project_public(project)


@router.post("/projects/{project_id}/active-model", response_model=ProjectPublic)
def set_active_model(project_id: int, body: ActiveModel, session: SessionDep, admin: AdminUser) -> ProjectPublic:
    from backend.services.embedding_jobs import enqueue_project_embeddings

    project = project_for_user(session, project_id, admin)
    if session.get(ModelVersion, body.model_version_id) is None:
        raise NotFound(f"model version {body.model_version_id} not found")
    changed = project.active_model_version_id != body.model_version_id
    project.active_model_version_id = body.model_version_id
    session.commit()
    if changed:
        enqueue_project_embeddings(project.id)
    return project_public(project)


@router.post("/projects/{project_id}/labels", response_model=LabelPublic, status_code=201)
def add_label(project_id: int, body: LabelCreate, session: SessionDep, admin: AdminUser) -> Label:
    project = project_for_user(session, project_id, admin)
    if any(lab.name == body.name for lab in project.labels):
        raise Conflict(f"label {body.name!r} already exists in this project")
    label = Label(project_id=project.id, name=body.name, color=body.color)
    session.add(label)
    session.commit()
    return label


def _label(session, label_id: int, admin: User) -> Label:
    label = session.get(Label, label_id)
    if label is None:
        raise NotFound(f"label {label_id} not found")
    project_for_user(session, label.project_id, admin)
    return label


@router.patch("/labels/{label_id}", response_model=LabelPublic)
def update_label(label_id: int, body: LabelUpdate, session: SessionDep, admin: AdminUser) -> Label:
    label = _label(session, label_id, admin)
    if body.name is not None and body.name != label.name:
        clash = session.scalar(select(Label.id).where(Label.project_id == label.project_id, Label.name == body.name))
        if clash is not None:
            raise Conflict(f"label {body.name!r} already exists in this project")
        label.name = body.name
    if body.color is not None:
        label.color = body.color
    session.commit()
    return label


@router.delete("/labels/{label_id}", status_code=204)
def delete_label(label_id: int, session: SessionDep, admin: AdminUser) -> Response:
    label = _label(session, label_id, admin)
    used = session.scalar(select(func.count(Annotation.id)).where(Annotation.label_id == label.id))
    if used:
        raise Conflict(f"label {label.name!r} is used by {used} annotations; relabel them first")
    session.delete(label)
    session.commit()
    return Response(status_code=204)


@router.post("/projects/{project_id}/members", response_model=ProjectPublic)
def add_member(project_id: int, body: MemberAdd, session: SessionDep, admin: AdminUser) -> ProjectPublic:
    project = project_for_user(session, project_id, admin)
    if session.get(User, body.user_id) is None:
        raise NotFound(f"user {body.user_id} not found")
    if not any(m.user_id == body.user_id for m in project.members):
        project.members.append(ProjectMember(user_id=body.user_id))
        session.commit()
    return project_public(project)


@router.delete("/projects/{project_id}/members/{user_id}", response_model=ProjectPublic)
def remove_member(project_id: int, user_id: int, session: SessionDep, admin: AdminUser) -> ProjectPublic:
    project = project_for_user(session, project_id, admin)
    member = next((m for m in project.members if m.user_id == user_id), None)
    if member is None:
        raise NotFound(f"user {user_id} is not a member of project {project_id}")
    project.members.remove(member)
    session.commit()
    return project_public(project)


@router.get("/projects/{project_id}/progress")
def progress(project_id: int, session: SessionDep, user: CurrentUser) -> dict:
    project = project_for_user(session, project_id, user)
    by_status = dict(session.execute(
        select(Image.status, func.count(Image.id)).where(Image.project_id == project.id).group_by(Image.status)).all())
    rows = session.execute(
        select(Annotation.stage, Annotation.source, func.count(Annotation.id))
        .join(Image, Image.id == Annotation.image_id).where(Image.project_id == project.id)
        .group_by(Annotation.stage, Annotation.source)).all()
    per_stage: dict[str, dict[str, int]] = {}
    for stage, source, count in rows:
        per_stage.setdefault(stage, {})[source] = count
    return {"project_id": project.id, "stage": project.stage, "images": sum(by_status.values()),
            "images_by_status": by_status, "annotations_by_stage": per_stage}
