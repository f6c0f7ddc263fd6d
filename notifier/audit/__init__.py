"""The audit trail: who did what, appended and never changed.

``models`` holds the table, ``service`` the one ``record`` call every domain
uses and the reads the pages and ``notifier audit`` show. It sits low so
that anything may audit: it imports only ``db``.
"""
