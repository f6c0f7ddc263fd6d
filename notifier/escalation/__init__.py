"""Cases handed to people: the rule, the daily sweep, assignment, outcomes and lists.

``rule`` is the second-billing-date rule, ``sweep`` opens and closes cases in
bulk for an ``as_of`` date, ``assignment`` picks the agent (language,
capacity, priority of the waiting), ``agents`` adds and changes them, ``service``
records outcomes and reassignments, ``callbacks`` tells producers, ``lists``
and ``downloads`` are the agents' call and visit lists, ``notices`` the
printed visit notice, ``proposal`` the dry run of the sweep, ``holds`` the
dunning locks (which hold applies to an account, a bill, an area or a case on a
date), ``proof`` whether a notice was served, ``record`` and ``record_pdf`` an
account's service record. May import ``accounts``, ``events`` (the contract's
vocabularies: spoken languages), ``billing``, ``deliveries`` (what was sent, read
only), ``audit``,
``webhooks``, ``policy``, ``notices``, ``exports``, ``channels`` (the print
layout) and the wiring's floor; never the runtime, a flow or a way in.
"""
