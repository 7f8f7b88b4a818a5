"""SQLAlchemy models: Octavia's tables, local IP allocations and the job queue."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship

from amphorae.common.timeutil import utcnow


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class IdMixin:
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class StatusMixin:
    provisioning_status: Mapped[str] = mapped_column(String(16))
    operating_status: Mapped[str] = mapped_column(String(16))


class Tag(Base):
    __tablename__ = "tag"
    resource_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)


class TagMixin:
    """Tags live in one table keyed by the owning object's id (relationship set below)."""

    _tags: list[Tag]

    @property
    def tags(self) -> list[str]:
        return sorted(t.tag for t in self._tags)

    @tags.setter
    def tags(self, values: list[str] | None) -> None:
        wanted = list(dict.fromkeys(values or []))
        self._tags = [Tag(resource_id=self.id, tag=v) for v in wanted]


# --- load balancers -------------------------------------------------------------------


class LoadBalancer(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "load_balancer"
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    topology: Mapped[str | None] = mapped_column(String(36))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    server_group_id: Mapped[str | None] = mapped_column(String(36))
    provider: Mapped[str | None] = mapped_column(String(64))
    flavor_id: Mapped[str | None] = mapped_column(ForeignKey("flavor.id"))
    availability_zone: Mapped[str | None] = mapped_column(
        ForeignKey("availability_zone.name"))

    vip: Mapped[Vip] = relationship(back_populates="load_balancer", uselist=False,
                                    cascade="all, delete-orphan", lazy="joined")
    additional_vips: Mapped[list[AdditionalVip]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")
    vip_security_groups: Mapped[list[VipSecurityGroup]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")
    listeners: Mapped[list[Listener]] = relationship(back_populates="load_balancer",
                                                     cascade="all, delete-orphan")
    pools: Mapped[list[Pool]] = relationship(back_populates="load_balancer",
                                             cascade="all, delete-orphan")
    amphorae: Mapped[list[Amphora]] = relationship(back_populates="load_balancer")


class Vip(Base):
    __tablename__ = "vip"
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), primary_key=True)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(String(36))
    subnet_id: Mapped[str | None] = mapped_column(String(36))
    network_id: Mapped[str | None] = mapped_column(String(36))
    qos_policy_id: Mapped[str | None] = mapped_column(String(36))
    octavia_owned: Mapped[bool] = mapped_column(Boolean, default=True)
    vnic_type: Mapped[str] = mapped_column(String(64), default="normal")
    load_balancer: Mapped[LoadBalancer] = relationship(back_populates="vip")


class AdditionalVip(Base):
    __tablename__ = "additional_vip"
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), primary_key=True)
    subnet_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    network_id: Mapped[str | None] = mapped_column(String(36))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(String(36))


class VipSecurityGroup(Base):
    __tablename__ = "vip_security_group"
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), primary_key=True)
    sg_id: Mapped[str] = mapped_column(String(36), primary_key=True)


# --- listeners ------------------------------------------------------------------------


class Listener(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "listener"
    __table_args__ = (UniqueConstraint("load_balancer_id", "protocol", "protocol_port"),)
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    protocol_port: Mapped[int] = mapped_column(Integer)
    connection_limit: Mapped[int] = mapped_column(Integer, default=-1)
    default_pool_id: Mapped[str | None] = mapped_column(
        ForeignKey("pool.id"))
    tls_certificate_id: Mapped[str | None] = mapped_column(String(255))
    client_ca_tls_certificate_id: Mapped[str | None] = mapped_column(String(255))
    client_authentication: Mapped[str] = mapped_column(String(10), default="NONE")
    client_crl_container_id: Mapped[str | None] = mapped_column(String(255))
    peer_port: Mapped[int | None] = mapped_column(Integer)
    insert_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timeout_client_data: Mapped[int | None] = mapped_column(Integer)
    timeout_member_connect: Mapped[int | None] = mapped_column(Integer)
    timeout_member_data: Mapped[int | None] = mapped_column(Integer)
    timeout_tcp_inspect: Mapped[int | None] = mapped_column(Integer)
    tls_ciphers: Mapped[str | None] = mapped_column(String(2048))
    tls_versions: Mapped[list[str] | None] = mapped_column(JSON)
    alpn_protocols: Mapped[list[str] | None] = mapped_column(JSON)
    hsts_max_age: Mapped[int | None] = mapped_column(Integer)
    hsts_include_subdomains: Mapped[bool] = mapped_column(Boolean, default=False)
    hsts_preload: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    load_balancer: Mapped[LoadBalancer] = relationship(back_populates="listeners")
    default_pool: Mapped[Pool | None] = relationship(foreign_keys=[default_pool_id])
    sni_containers: Mapped[list[SNI]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SNI.position")
    allowed_cidrs: Mapped[list[ListenerCidr]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")
    l7policies: Mapped[list[L7Policy]] = relationship(
        back_populates="listener", cascade="all, delete-orphan", order_by="L7Policy.position")


class SNI(Base):
    __tablename__ = "sni"
    listener_id: Mapped[str] = mapped_column(
        ForeignKey("listener.id", ondelete="CASCADE"), primary_key=True)
    tls_container_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class ListenerCidr(Base):
    __tablename__ = "listener_cidr"
    listener_id: Mapped[str] = mapped_column(
        ForeignKey("listener.id", ondelete="CASCADE"), primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64), primary_key=True)


# --- pools, members, health monitors --------------------------------------------------


class Pool(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "pool"
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    lb_algorithm: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tls_certificate_id: Mapped[str | None] = mapped_column(String(255))
    ca_tls_certificate_id: Mapped[str | None] = mapped_column(String(255))
    crl_container_id: Mapped[str | None] = mapped_column(String(255))
    tls_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    tls_ciphers: Mapped[str | None] = mapped_column(String(2048))
    tls_versions: Mapped[list[str] | None] = mapped_column(JSON)
    alpn_protocols: Mapped[list[str] | None] = mapped_column(JSON)

    load_balancer: Mapped[LoadBalancer] = relationship(back_populates="pools")
    session_persistence: Mapped[SessionPersistence | None] = relationship(
        cascade="all, delete-orphan", uselist=False, lazy="selectin")
    members: Mapped[list[Member]] = relationship(back_populates="pool",
                                                 cascade="all, delete-orphan")
    health_monitor: Mapped[HealthMonitor | None] = relationship(
        back_populates="pool", cascade="all, delete-orphan", uselist=False)
    listeners_as_default: Mapped[list[Listener]] = relationship(
        foreign_keys="Listener.default_pool_id", viewonly=True)
    l7policies_redirecting: Mapped[list[L7Policy]] = relationship(
        foreign_keys="L7Policy.redirect_pool_id", viewonly=True)


class SessionPersistence(Base):
    __tablename__ = "session_persistence"
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pool.id", ondelete="CASCADE"), primary_key=True)
    type: Mapped[str] = mapped_column(String(36))
    cookie_name: Mapped[str | None] = mapped_column(String(255))
    persistence_timeout: Mapped[int | None] = mapped_column(Integer)
    persistence_granularity: Mapped[str | None] = mapped_column(String(64))


class Member(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "member"
    __table_args__ = (UniqueConstraint("pool_id", "ip_address", "protocol_port"),)
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pool.id", ondelete="CASCADE"), index=True)
    subnet_id: Mapped[str | None] = mapped_column(String(36))
    ip_address: Mapped[str] = mapped_column(String(64))
    protocol_port: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    backup: Mapped[bool] = mapped_column(Boolean, default=False)
    monitor_address: Mapped[str | None] = mapped_column(String(64))
    monitor_port: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    vnic_type: Mapped[str] = mapped_column(String(64), default="normal")

    pool: Mapped[Pool] = relationship(back_populates="members")


class HealthMonitor(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "health_monitor"
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pool.id", ondelete="CASCADE"), unique=True)
    type: Mapped[str] = mapped_column(String(36))
    delay: Mapped[int] = mapped_column(Integer)
    timeout: Mapped[int] = mapped_column(Integer)
    fall_threshold: Mapped[int] = mapped_column(Integer)
    rise_threshold: Mapped[int] = mapped_column(Integer)
    http_method: Mapped[str | None] = mapped_column(String(16))
    url_path: Mapped[str | None] = mapped_column(String(2048))
    expected_codes: Mapped[str | None] = mapped_column(String(64))
    http_version: Mapped[float | None] = mapped_column()
    domain_name: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    pool: Mapped[Pool] = relationship(back_populates="health_monitor")


# --- L7 -------------------------------------------------------------------------------


class L7Policy(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "l7policy"
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    listener_id: Mapped[str] = mapped_column(
        ForeignKey("listener.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(36))
    redirect_pool_id: Mapped[str | None] = mapped_column(ForeignKey("pool.id"))
    redirect_url: Mapped[str | None] = mapped_column(String(255))
    redirect_prefix: Mapped[str | None] = mapped_column(String(255))
    redirect_http_code: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    listener: Mapped[Listener] = relationship(back_populates="l7policies")
    redirect_pool: Mapped[Pool | None] = relationship(foreign_keys=[redirect_pool_id])
    rules: Mapped[list[L7Rule]] = relationship(back_populates="l7policy",
                                               cascade="all, delete-orphan")


class L7Rule(IdMixin, TimestampMixin, StatusMixin, TagMixin, Base):
    __tablename__ = "l7rule"
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    l7policy_id: Mapped[str] = mapped_column(
        ForeignKey("l7policy.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(36))
    compare_type: Mapped[str] = mapped_column(String(36))
    key: Mapped[str | None] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    invert: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    l7policy: Mapped[L7Policy] = relationship(back_populates="rules")


# --- quotas, flavors, availability zones ---------------------------------------------


class Quota(Base):
    __tablename__ = "quotas"
    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    load_balancer: Mapped[int | None] = mapped_column(Integer)
    listener: Mapped[int | None] = mapped_column(Integer)
    pool: Mapped[int | None] = mapped_column(Integer)
    health_monitor: Mapped[int | None] = mapped_column(Integer)
    member: Mapped[int | None] = mapped_column(Integer)
    l7policy: Mapped[int | None] = mapped_column(Integer)
    l7rule: Mapped[int | None] = mapped_column(Integer)


class FlavorProfile(IdMixin, Base):
    __tablename__ = "flavor_profile"
    name: Mapped[str] = mapped_column(String(255))
    provider_name: Mapped[str] = mapped_column(String(255))
    flavor_data: Mapped[str] = mapped_column(String(4096))


class Flavor(IdMixin, Base):
    __tablename__ = "flavor"
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    flavor_profile_id: Mapped[str] = mapped_column(ForeignKey("flavor_profile.id"))
    flavor_profile: Mapped[FlavorProfile] = relationship(lazy="joined")


class AvailabilityZoneProfile(IdMixin, Base):
    __tablename__ = "availability_zone_profile"
    name: Mapped[str] = mapped_column(String(255))
    provider_name: Mapped[str] = mapped_column(String(255))
    availability_zone_data: Mapped[str] = mapped_column(String(4096))


class AvailabilityZone(Base):
    __tablename__ = "availability_zone"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_zone_profile_id: Mapped[str] = mapped_column(
        ForeignKey("availability_zone_profile.id"))
    availability_zone_profile: Mapped[AvailabilityZoneProfile] = relationship(lazy="joined")


# --- amphorae -------------------------------------------------------------------------


class Amphora(IdMixin, TimestampMixin, Base):
    __tablename__ = "amphora"
    load_balancer_id: Mapped[str | None] = mapped_column(
        ForeignKey("load_balancer.id"), index=True)
    compute_id: Mapped[str | None] = mapped_column(String(36))
    lb_network_ip: Mapped[str | None] = mapped_column(String(64))
    vrrp_ip: Mapped[str | None] = mapped_column(String(64))
    ha_ip: Mapped[str | None] = mapped_column(String(64))
    vrrp_port_id: Mapped[str | None] = mapped_column(String(36))
    ha_port_id: Mapped[str | None] = mapped_column(String(36))
    cert_expiration: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cert_busy: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(36), index=True)
    vrrp_interface: Mapped[str | None] = mapped_column(String(16))
    vrrp_id: Mapped[int | None] = mapped_column(Integer)
    vrrp_priority: Mapped[int | None] = mapped_column(Integer)
    cached_zone: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(36))
    compute_flavor: Mapped[str | None] = mapped_column(String(255))

    load_balancer: Mapped[LoadBalancer | None] = relationship(back_populates="amphorae")


class AmphoraHealth(Base):
    __tablename__ = "amphora_health"
    amphora_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    last_update: Mapped[dt.datetime] = mapped_column(DateTime)
    busy: Mapped[bool] = mapped_column(Boolean, default=False)  # Octavia's: failover running
    load: Mapped[float | None] = mapped_column(Float)  # HAProxy's busy share, 0 to 1


class LoadBalancerScale(Base):
    """How many amphorae an ACTIVE_ACTIVE load balancer should run, and why."""
    __tablename__ = "load_balancer_scale"
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), primary_key=True)
    desired: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class VRRPGroup(Base):
    __tablename__ = "vrrp_group"
    load_balancer_id: Mapped[str] = mapped_column(
        ForeignKey("load_balancer.id", ondelete="CASCADE"), primary_key=True)
    vrrp_group_name: Mapped[str | None] = mapped_column(String(36))
    vrrp_auth_type: Mapped[str | None] = mapped_column(String(16))
    vrrp_auth_pass: Mapped[str | None] = mapped_column(String(36))
    advert_int: Mapped[float | None] = mapped_column(Float)  # seconds; Octavia's: whole


class ListenerStatistics(Base):
    __tablename__ = "listener_statistics"
    listener_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    amphora_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    active_connections: Mapped[int] = mapped_column(BigInteger, default=0)
    total_connections: Mapped[int] = mapped_column(BigInteger, default=0)
    request_errors: Mapped[int] = mapped_column(BigInteger, default=0)


# --- local network driver -------------------------------------------------------------


class IPAllocation(Base):
    """An address handed out by the local network driver (a 'port' in Neutron's terms)."""

    __tablename__ = "ip_allocation"
    __table_args__ = (UniqueConstraint("subnet_id", "ip_address"),)
    port_id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subnet_id: Mapped[str] = mapped_column(String(36), index=True)
    network_id: Mapped[str] = mapped_column(String(36))
    ip_address: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(255), index=True)
    device_owner: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=utcnow)


# --- job queue ------------------------------------------------------------------------


class Job(Base):
    """Work for the controller worker, written in the same transaction as the API change."""

    __tablename__ = "job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    load_balancer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(64))
    amphora_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


# --- events ---------------------------------------------------------------------------


class Event(Base):
    """Something an operator wants to know happened (db/events.py records it): a status
    change, a failover, an amphora booted or removed, a change applied. Purged by
    housekeeping after ``[house_keeping] event_expiry_age``."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    resource_type: Mapped[str | None] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(36))
    load_balancer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    message: Mapped[str] = mapped_column(String(1024))


TAGGABLE = (LoadBalancer, Listener, Pool, Member, HealthMonitor, L7Policy, L7Rule)
for _model in TAGGABLE:
    _model._tags = relationship(  # type: ignore[attr-defined]
        Tag,
        primaryjoin=foreign(Tag.resource_id) == _model.__table__.c.id,
        cascade="all, delete-orphan",
        lazy="selectin",
        overlaps="_tags",
    )
