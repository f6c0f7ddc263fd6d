"""API keys, roles and who may use each route.

``models`` holds the key table (a hash, never the key), ``keys`` creating,
verifying, revoking and rotating keys (an agent key names its agent; a
rotation carries the producer's callback URL over), ``access`` the one role
model and the rule of every route. May import ``audit``, ``escalation``
(agents), ``webhooks`` (endpoints) and the wiring's floor; never a flow or a
way in.
"""
