"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 14:18:02.574925
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('amphora_health',
    sa.Column('amphora_id', sa.String(length=36), nullable=False),
    sa.Column('last_update', sa.DateTime(), nullable=False),
    sa.Column('busy', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('amphora_id')
    )
    op.create_table('availability_zone_profile',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('provider_name', sa.String(length=255), nullable=False),
    sa.Column('availability_zone_data', sa.String(length=4096), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('flavor_profile',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('provider_name', sa.String(length=255), nullable=False),
    sa.Column('flavor_data', sa.String(length=4096), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('ip_allocation',
    sa.Column('port_id', sa.String(length=36), nullable=False),
    sa.Column('subnet_id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=False),
    sa.Column('ip_address', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.String(length=255), nullable=True),
    sa.Column('device_owner', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('port_id'),
    sa.UniqueConstraint('subnet_id', 'ip_address')
    )
    with op.batch_alter_table('ip_allocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ip_allocation_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ip_allocation_subnet_id'), ['subnet_id'], unique=False)

    op.create_table('job',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('load_balancer_id', sa.String(length=36), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('amphora_id', sa.String(length=36), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=255), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_lease_expires_at'), ['lease_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_load_balancer_id'), ['load_balancer_id'], unique=False)

    op.create_table('listener_statistics',
    sa.Column('listener_id', sa.String(length=36), nullable=False),
    sa.Column('amphora_id', sa.String(length=36), nullable=False),
    sa.Column('bytes_in', sa.BigInteger(), nullable=False),
    sa.Column('bytes_out', sa.BigInteger(), nullable=False),
    sa.Column('active_connections', sa.BigInteger(), nullable=False),
    sa.Column('total_connections', sa.BigInteger(), nullable=False),
    sa.Column('request_errors', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('listener_id', 'amphora_id')
    )
    op.create_table('quotas',
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('load_balancer', sa.Integer(), nullable=True),
    sa.Column('listener', sa.Integer(), nullable=True),
    sa.Column('pool', sa.Integer(), nullable=True),
    sa.Column('health_monitor', sa.Integer(), nullable=True),
    sa.Column('member', sa.Integer(), nullable=True),
    sa.Column('l7policy', sa.Integer(), nullable=True),
    sa.Column('l7rule', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('project_id')
    )
    op.create_table('tag',
    sa.Column('resource_id', sa.String(length=36), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('resource_id', 'tag')
    )
    op.create_table('availability_zone',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('availability_zone_profile_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['availability_zone_profile_id'], ['availability_zone_profile.id'], ),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('flavor',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('flavor_profile_id', sa.String(length=36), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['flavor_profile_id'], ['flavor_profile.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('load_balancer',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('topology', sa.String(length=36), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('server_group_id', sa.String(length=36), nullable=True),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('flavor_id', sa.String(length=36), nullable=True),
    sa.Column('availability_zone', sa.String(length=255), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['availability_zone'], ['availability_zone.name'], ),
    sa.ForeignKeyConstraint(['flavor_id'], ['flavor.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('load_balancer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_load_balancer_project_id'), ['project_id'], unique=False)

    op.create_table('additional_vip',
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('subnet_id', sa.String(length=36), nullable=False),
    sa.Column('network_id', sa.String(length=36), nullable=True),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('port_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('load_balancer_id', 'subnet_id')
    )
    op.create_table('amphora',
    sa.Column('load_balancer_id', sa.String(length=36), nullable=True),
    sa.Column('compute_id', sa.String(length=36), nullable=True),
    sa.Column('lb_network_ip', sa.String(length=64), nullable=True),
    sa.Column('vrrp_ip', sa.String(length=64), nullable=True),
    sa.Column('ha_ip', sa.String(length=64), nullable=True),
    sa.Column('vrrp_port_id', sa.String(length=36), nullable=True),
    sa.Column('ha_port_id', sa.String(length=36), nullable=True),
    sa.Column('cert_expiration', sa.DateTime(), nullable=True),
    sa.Column('cert_busy', sa.Boolean(), nullable=False),
    sa.Column('role', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=36), nullable=False),
    sa.Column('vrrp_interface', sa.String(length=16), nullable=True),
    sa.Column('vrrp_id', sa.Integer(), nullable=True),
    sa.Column('vrrp_priority', sa.Integer(), nullable=True),
    sa.Column('cached_zone', sa.String(length=255), nullable=True),
    sa.Column('image_id', sa.String(length=36), nullable=True),
    sa.Column('compute_flavor', sa.String(length=255), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('amphora', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_amphora_load_balancer_id'), ['load_balancer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_amphora_status'), ['status'], unique=False)

    op.create_table('pool',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('lb_algorithm', sa.String(length=255), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('tls_certificate_id', sa.String(length=255), nullable=True),
    sa.Column('ca_tls_certificate_id', sa.String(length=255), nullable=True),
    sa.Column('crl_container_id', sa.String(length=255), nullable=True),
    sa.Column('tls_enabled', sa.Boolean(), nullable=False),
    sa.Column('tls_ciphers', sa.String(length=2048), nullable=True),
    sa.Column('tls_versions', sa.JSON(), nullable=True),
    sa.Column('alpn_protocols', sa.JSON(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pool', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_load_balancer_id'), ['load_balancer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pool_project_id'), ['project_id'], unique=False)

    op.create_table('vip',
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('port_id', sa.String(length=36), nullable=True),
    sa.Column('subnet_id', sa.String(length=36), nullable=True),
    sa.Column('network_id', sa.String(length=36), nullable=True),
    sa.Column('qos_policy_id', sa.String(length=36), nullable=True),
    sa.Column('octavia_owned', sa.Boolean(), nullable=False),
    sa.Column('vnic_type', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('load_balancer_id')
    )
    op.create_table('vip_security_group',
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('sg_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('load_balancer_id', 'sg_id')
    )
    op.create_table('vrrp_group',
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('vrrp_group_name', sa.String(length=36), nullable=True),
    sa.Column('vrrp_auth_type', sa.String(length=16), nullable=True),
    sa.Column('vrrp_auth_pass', sa.String(length=36), nullable=True),
    sa.Column('advert_int', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('load_balancer_id')
    )
    op.create_table('health_monitor',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('pool_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=36), nullable=False),
    sa.Column('delay', sa.Integer(), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('fall_threshold', sa.Integer(), nullable=False),
    sa.Column('rise_threshold', sa.Integer(), nullable=False),
    sa.Column('http_method', sa.String(length=16), nullable=True),
    sa.Column('url_path', sa.String(length=2048), nullable=True),
    sa.Column('expected_codes', sa.String(length=64), nullable=True),
    sa.Column('http_version', sa.Double(), nullable=True),
    sa.Column('domain_name', sa.String(length=255), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['pool.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pool_id')
    )
    with op.batch_alter_table('health_monitor', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_health_monitor_project_id'), ['project_id'], unique=False)

    op.create_table('listener',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('load_balancer_id', sa.String(length=36), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('protocol_port', sa.Integer(), nullable=False),
    sa.Column('connection_limit', sa.Integer(), nullable=False),
    sa.Column('default_pool_id', sa.String(length=36), nullable=True),
    sa.Column('tls_certificate_id', sa.String(length=255), nullable=True),
    sa.Column('client_ca_tls_certificate_id', sa.String(length=255), nullable=True),
    sa.Column('client_authentication', sa.String(length=10), nullable=False),
    sa.Column('client_crl_container_id', sa.String(length=255), nullable=True),
    sa.Column('peer_port', sa.Integer(), nullable=True),
    sa.Column('insert_headers', sa.JSON(), nullable=True),
    sa.Column('timeout_client_data', sa.Integer(), nullable=True),
    sa.Column('timeout_member_connect', sa.Integer(), nullable=True),
    sa.Column('timeout_member_data', sa.Integer(), nullable=True),
    sa.Column('timeout_tcp_inspect', sa.Integer(), nullable=True),
    sa.Column('tls_ciphers', sa.String(length=2048), nullable=True),
    sa.Column('tls_versions', sa.JSON(), nullable=True),
    sa.Column('alpn_protocols', sa.JSON(), nullable=True),
    sa.Column('hsts_max_age', sa.Integer(), nullable=True),
    sa.Column('hsts_include_subdomains', sa.Boolean(), nullable=False),
    sa.Column('hsts_preload', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['default_pool_id'], ['pool.id'], ),
    sa.ForeignKeyConstraint(['load_balancer_id'], ['load_balancer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('load_balancer_id', 'protocol', 'protocol_port')
    )
    with op.batch_alter_table('listener', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_listener_load_balancer_id'), ['load_balancer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_listener_project_id'), ['project_id'], unique=False)

    op.create_table('member',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('pool_id', sa.String(length=36), nullable=False),
    sa.Column('subnet_id', sa.String(length=36), nullable=True),
    sa.Column('ip_address', sa.String(length=64), nullable=False),
    sa.Column('protocol_port', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('backup', sa.Boolean(), nullable=False),
    sa.Column('monitor_address', sa.String(length=64), nullable=True),
    sa.Column('monitor_port', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('vnic_type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['pool.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pool_id', 'ip_address', 'protocol_port')
    )
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_member_project_id'), ['project_id'], unique=False)

    op.create_table('session_persistence',
    sa.Column('pool_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=36), nullable=False),
    sa.Column('cookie_name', sa.String(length=255), nullable=True),
    sa.Column('persistence_timeout', sa.Integer(), nullable=True),
    sa.Column('persistence_granularity', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['pool.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pool_id')
    )
    op.create_table('l7policy',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('listener_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=36), nullable=False),
    sa.Column('redirect_pool_id', sa.String(length=36), nullable=True),
    sa.Column('redirect_url', sa.String(length=255), nullable=True),
    sa.Column('redirect_prefix', sa.String(length=255), nullable=True),
    sa.Column('redirect_http_code', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['listener_id'], ['listener.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['redirect_pool_id'], ['pool.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('l7policy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l7policy_listener_id'), ['listener_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_l7policy_project_id'), ['project_id'], unique=False)

    op.create_table('listener_cidr',
    sa.Column('listener_id', sa.String(length=36), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['listener_id'], ['listener.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('listener_id', 'cidr')
    )
    op.create_table('sni',
    sa.Column('listener_id', sa.String(length=36), nullable=False),
    sa.Column('tls_container_id', sa.String(length=255), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['listener_id'], ['listener.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('listener_id', 'tls_container_id')
    )
    op.create_table('l7rule',
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('l7policy_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=36), nullable=False),
    sa.Column('compare_type', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=True),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('invert', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.Column('provisioning_status', sa.String(length=16), nullable=False),
    sa.Column('operating_status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['l7policy_id'], ['l7policy.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('l7rule', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_l7rule_l7policy_id'), ['l7policy_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_l7rule_project_id'), ['project_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('l7rule', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_l7rule_project_id'))
        batch_op.drop_index(batch_op.f('ix_l7rule_l7policy_id'))

    op.drop_table('l7rule')
    op.drop_table('sni')
    op.drop_table('listener_cidr')
    with op.batch_alter_table('l7policy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_l7policy_project_id'))
        batch_op.drop_index(batch_op.f('ix_l7policy_listener_id'))

    op.drop_table('l7policy')
    op.drop_table('session_persistence')
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_project_id'))
        batch_op.drop_index(batch_op.f('ix_member_pool_id'))

    op.drop_table('member')
    with op.batch_alter_table('listener', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_listener_project_id'))
        batch_op.drop_index(batch_op.f('ix_listener_load_balancer_id'))

    op.drop_table('listener')
    with op.batch_alter_table('health_monitor', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_health_monitor_project_id'))

    op.drop_table('health_monitor')
    op.drop_table('vrrp_group')
    op.drop_table('vip_security_group')
    op.drop_table('vip')
    with op.batch_alter_table('pool', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_project_id'))
        batch_op.drop_index(batch_op.f('ix_pool_load_balancer_id'))

    op.drop_table('pool')
    with op.batch_alter_table('amphora', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_amphora_status'))
        batch_op.drop_index(batch_op.f('ix_amphora_load_balancer_id'))

    op.drop_table('amphora')
    op.drop_table('additional_vip')
    with op.batch_alter_table('load_balancer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_load_balancer_project_id'))

    op.drop_table('load_balancer')
    op.drop_table('flavor')
    op.drop_table('availability_zone')
    op.drop_table('tag')
    op.drop_table('quotas')
    op.drop_table('listener_statistics')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_load_balancer_id'))
        batch_op.drop_index(batch_op.f('ix_job_lease_expires_at'))

    op.drop_table('job')
    with op.batch_alter_table('ip_allocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ip_allocation_subnet_id'))
        batch_op.drop_index(batch_op.f('ix_ip_allocation_device_id'))

    op.drop_table('ip_allocation')
    op.drop_table('flavor_profile')
    op.drop_table('availability_zone_profile')
    op.drop_table('amphora_health')
