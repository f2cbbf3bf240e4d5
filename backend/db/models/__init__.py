"""SQLAlchemy models, one module per table group. Alembic (``migrations/``) owns the schema.

Import from here (``from backend.db.models import Image``): importing this package registers
every table on ``Base.metadata``.
"""
from backend.db.base import (IMAGE_STATUSES, JOB_STATUSES, NAMING, REVIEW_STATES, ROLES, ROUND_STATUSES, SOURCES,
                             STAGES, Base, utcnow)
from backend.db.models.annotations import Annotation, Lease, ProposalRejection
from backend.db.models.engine import Job, ModelVersion, Round
from backend.db.models.images import Embedding, Image
from backend.db.models.projects import Label, Project, ProjectMember
from backend.db.models.users import User

__all__ = ['Base', 'utcnow', 'IMAGE_STATUSES', 'JOB_STATUSES', 'NAMING', 'REVIEW_STATES', 'ROLES',
           'ROUND_STATUSES', 'SOURCES', 'STAGES', 'Annotation', 'Embedding', 'Image', 'Job', 'Label',
           'Lease', 'ModelVersion', 'Project', 'ProjectMember', 'ProposalRejection', 'Round', 'User']
