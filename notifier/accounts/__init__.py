"""The customer's account: who they are, how they can be reached, what they opted out of.

``models`` holds the table, ``service`` the upsert of what producers know and
the reads channels need (a usable mobile, the push tokens), and the
protections supervisors add; ``labels`` the names of protections and spoken
languages as pages and exports show them. May import the
wiring's floor (``db``), ``events`` (the contract's account fields), ``audit`` and ``privacy``;
never a flow, the runtime or a way in.
"""
