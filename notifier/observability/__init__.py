"""Logs and metrics, as people and Prometheus read them.

``logs`` is the logging set-up of every process (JSON when deployed, one
text line when embedded; personal data masked through ``privacy``);
``metrics`` the Prometheus collector that reads the database when scraped.
May import ``deliveries``, ``escalation`` and ``events`` (the metrics' tables),
``privacy`` and the wiring's floor; never a flow or a way in.
"""
