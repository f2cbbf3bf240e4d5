"""projects.instructions: the annotation guidelines annotators read beside the image

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('projects', sa.Column('instructions', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('projects') as batch:
        batch.drop_column('instructions')
