"""The message bus way in: producers publish events; ``notifier ingest`` stores them."""
