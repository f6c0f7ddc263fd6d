"""The routing policy (config/policy.yaml) and how it applies to one account.

``rules`` is the policy file as typed data with its time rules (quiet hours,
dedup window, retries, escalation thresholds); ``routing`` picks the channels
of one notice for one account; ``local_time`` turns a stored UTC instant into
the business date and time a person reads. May import ``accounts`` only.
"""
