"""Notifications and their per-channel deliveries: the claim, the lease, every status change.

``models`` holds notifications, deliveries and their timeline; ``service``
the guarded status changes (a row changes only while its claim is held) and
the log queries; ``stats`` the dashboard's counts; ``callback_tokens`` the
signed tokens in the URLs given to Twilio. May import ``settings`` and
``db`` only: the flows decide, this records.
"""
