"""Finish a load balancer's pending work the way the worker does on success.

The worker (a later issue) consumes the jobs; until it exists the functional tests call
the same completion code it will call, then drop the consumed jobs.
"""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from amphorae.db import models as m
from amphorae.worker import completion


@functools.cache
def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url)


def settle(db_url: str, lb_id: str) -> None:
    with Session(_engine(db_url)) as session, session.begin():
        completion.complete(session, lb_id)
        session.execute(delete(m.Job).where(m.Job.load_balancer_id == lb_id))
