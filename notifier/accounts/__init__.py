"""The customer's account: who they are, how they can be reached, what they opted out of.

``models`` holds the table, ``service`` the upsert of what producers know and
the reads channels need (a usable mobile, the push tokens). May import the
wiring's floor (``db``) and ``events`` (the contract's account fields);
never a flow, the runtime or a way in.
"""
