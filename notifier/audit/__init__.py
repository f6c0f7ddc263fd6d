"""The audit trail: who did what, appended and never changed."""
