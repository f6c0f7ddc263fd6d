"""The bill ledger: what each account was billed and whether it paid.

``models`` holds the table, ``service`` the ledger built from ``bill.*``
events and the unpaid-bill queries every notice and case is built from. May
import ``events`` and the wiring's floor only.
"""
