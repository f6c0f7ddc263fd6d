"""Where the domains meet: processing an event, delivering, reconciling.

Each module is one piece of work a task or a route starts: ``process_event``
(policy → notifications → rendered deliveries), ``deliver`` (claim → checks →
provider → record), ``fallback``, ``reports`` (Twilio status reports),
``receipts``, ``ambiguous`` (a send whose answer was lost: looked up, not
resent blindly), ``postcards`` (the print batch), ``producer_callbacks`` (the
signed POSTs), ``reconcile``, ``retention`` (the purge), ``ops_actions`` and
``unreachable`` (a notice that reached nobody, told to its producer),
``holds`` (a hold ended: one notice per account it kept back), ``push_terms``
(a push's expiry, collapse key and priority), ``provider_routes`` (which of a
channel's providers sends each delivery now: circuits, stalled receipts, weights).
May import the runtime and every domain below it; never ``api``, ``web``,
``worker`` or ``cli``.
"""
