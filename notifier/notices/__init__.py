"""What a notice says: strict templates, the context built from the ledger, previews.

``rendering`` holds the one Jinja2 environment (``StrictUndefined``: a
missing variable fails at load time, never a blank in an SMS) and the sample
contexts; ``content`` builds a notice's context from the ledger (accounts,
bills, the pay link) and the utility's identity (``Settings.identity``), and
sizes SMS; ``previews`` shows ops what a customer would get. May import ``accounts``, ``billing``, ``events``, ``privacy``,
``channels`` (channel names, SMS segments) and ``settings``.
"""
