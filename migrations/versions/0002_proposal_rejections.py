"""proposal rejections: rejected model proposals kept for undo and metrics

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 07:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'proposal_rejections',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('annotation_id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('rejected_by', sa.Integer(), nullable=True),
        sa.Column('stage', sa.String(length=30), nullable=False),
        sa.Column('source', sa.String(length=30), nullable=False),
        sa.Column('snapshot', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_proposal_rejections_image_id_images'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['rejected_by'], ['users.id'], name=op.f('fk_proposal_rejections_rejected_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_rejections')),
    )
    op.create_index(op.f('ix_proposal_rejections_image_id'), 'proposal_rejections', ['image_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_proposal_rejections_image_id'), table_name='proposal_rejections')
    op.drop_table('proposal_rejections')
