"""annotations.object_score: how much an automatic mask looks like a whole object

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 00:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('annotations', sa.Column('object_score', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('annotations') as batch:
        batch.drop_column('object_score')
