"""The routing policy (config/policy.yaml) and how it applies to one account.

``rules`` is the policy file as typed data with its time rules (quiet hours,
dedup window, retries, escalation thresholds); ``routing`` picks the channels
of one notice for one account. May import ``accounts`` only.
"""
