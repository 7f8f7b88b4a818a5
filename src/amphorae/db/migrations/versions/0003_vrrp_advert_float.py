"""vrrp_group.advert_int holds fractions of a second (sub-second VRRP adverts)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 07:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vrrp_group', schema=None) as batch_op:
        batch_op.alter_column('advert_int', existing_type=sa.Integer(), type_=sa.Float(),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('vrrp_group', schema=None) as batch_op:
        batch_op.alter_column('advert_int', existing_type=sa.Float(), type_=sa.Integer(),
                              existing_nullable=True)
