"""The producer contract and the events as stored.

``schema`` is what ``POST /v1/events`` and the bus accept (pydantic, every
bad field named), ``models`` the stored event (also its own outbox row),
``service`` accepting events once per ``event_id``. The lowest domain: it
imports ``privacy`` and ``db`` only.
"""
