"""The JSON API: one router per resource, each route a thin reader or a recorder.

Routes validate, record in one transaction and enqueue; they never call a
provider. ``deps`` holds the FastAPI dependencies (runtime, session, the
caller's key and role) that ``web`` shares; ``limits`` the body size and rate
per key; ``errors`` the declared error answers. May import the runtime, the
flows, every domain, ``notices``, ``observability``, ``privacy`` and
``queues``; never ``web`` (``notifier.app`` mounts both).
"""
