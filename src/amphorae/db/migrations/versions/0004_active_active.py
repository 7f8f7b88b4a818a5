"""ACTIVE_ACTIVE: a load balancer's wanted amphora count, and each amphora's load

load_balancer_scale holds the amphora count an ACTIVE_ACTIVE load balancer should run
(set by the admin scale API or the autoscaler) with why and when it last changed;
amphora_health.load is the busy share (0 to 1) its heartbeat last carried.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 18:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'load_balancer_scale',
        sa.Column('load_balancer_id', sa.String(36),
                  sa.ForeignKey('load_balancer.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('desired', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(255), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
    )
    with op.batch_alter_table('amphora_health', schema=None) as batch_op:
        batch_op.add_column(sa.Column('load', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('amphora_health', schema=None) as batch_op:
        batch_op.drop_column('load')
    op.drop_table('load_balancer_scale')
