"""The certificate files a load balancer's amphorae need, fetched from the certificate
manager: listener certificates (with their crt-list), client CAs and CRLs, and the
client certificates, CAs and CRLs of pools that re-encrypt to their members.

File names follow Octavia's: a certificate bundle is ``<sha1 of its PEM>.pem``, so a
certificate used twice is stored once; the other names come from worker/desired.py. A
listener or pool whose certificates cannot be fetched or parsed is reported in
``failed`` with the reason; the reconciler leaves it out and puts it in ERROR.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.common.cert_manager import CertificateError, CertManager
from amphorae.db import models as m
from amphorae.drivers.amphora.base import TLSFiles
from amphorae.worker import desired


def collect(session: Session, lb_id: str, manager: CertManager) -> TLSFiles:
    out = TLSFiles()
    for listener in session.scalars(select(m.Listener).where(
            m.Listener.load_balancer_id == lb_id, m.Listener.protocol == c.TERMINATED_HTTPS,
            m.Listener.provisioning_status.not_in(desired.GONE))):
        try:
            files, certs = _listener_files(listener, manager)
        except CertificateError as exc:
            out.failed[listener.id] = str(exc)
            continue
        out.files.update(files)
        out.crt_lists[desired.listener_cert_files(listener.id).crt_list] = certs
    for pool in session.scalars(select(m.Pool).where(
            m.Pool.load_balancer_id == lb_id, m.Pool.tls_enabled.is_(True),
            m.Pool.provisioning_status.not_in(desired.GONE))):
        try:
            out.files.update(_pool_files(pool, manager))
        except CertificateError as exc:
            out.failed[pool.id] = str(exc)
    return out


def _listener_files(listener: m.Listener,
                    manager: CertManager) -> tuple[dict[str, bytes], tuple[str, ...]]:
    names = desired.listener_cert_files(listener.id)
    refs = [listener.tls_certificate_id] if listener.tls_certificate_id else []
    refs += [sni.tls_container_id for sni in listener.sni_containers]
    files: dict[str, bytes] = {}
    certs: list[str] = []
    for ref in refs:
        pem = manager.get_cert(ref).bundle_pem()
        name = hashlib.sha1(pem).hexdigest() + ".pem"  # a file name (as Octavia), not a MAC
        files[name] = pem
        if name not in certs:
            certs.append(name)
    if listener.client_ca_tls_certificate_id:
        files[names.client_ca] = manager.get_ca(listener.client_ca_tls_certificate_id)
    if listener.client_crl_container_id:
        files[names.client_crl] = manager.get_crl(listener.client_crl_container_id)
    return files, tuple(certs)


def _pool_files(pool: m.Pool, manager: CertManager) -> dict[str, bytes]:
    names = desired.pool_cert_files(pool.id)
    files = {}
    if pool.tls_certificate_id:
        files[names.client_cert] = manager.get_cert(pool.tls_certificate_id).bundle_pem()
    if pool.ca_tls_certificate_id:
        files[names.ca] = manager.get_ca(pool.ca_tls_certificate_id)
    if pool.crl_container_id:
        files[names.crl] = manager.get_crl(pool.crl_container_id)
    return files
