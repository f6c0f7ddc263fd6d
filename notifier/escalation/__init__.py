"""Cases handed to people: the rule, the daily sweep, assignment, outcomes and lists,
and the collections ladder after the case.

``rule`` is the second-billing-date rule, ``sweep`` opens and closes cases in
bulk for an ``as_of`` date, ``assignment`` picks the agent (language,
capacity, priority of the waiting), ``agents`` adds and changes them, ``service``
records outcomes and reassignments, ``callbacks`` tells producers, ``lists``
and ``downloads`` are the agents' call and visit lists, ``notices`` the
printed visit notice, ``proposal`` the dry run of the sweep, ``holds`` the
dunning locks (which hold applies to an account, a bill, an area or a case on a
date), ``record`` and ``record_pdf`` an account's service record. The ladder:
``proof`` (what proves a notice served), ``stages`` (a case's stage changes, what
a payment does to them), ``ladder`` (final demand, suspension hand-off, the
producer's confirmations) and ``letters`` (the printed final demand). May import
``accounts``, ``billing``, ``audit``, ``webhooks``, ``policy``, ``notices``,
``exports``, ``deliveries`` and ``events`` (models and the contract's
vocabularies: what was sent, the event a notice hangs on, spoken languages),
``channels`` (the print layout) and the wiring's floor; never the runtime, a
flow or a way in.
"""
