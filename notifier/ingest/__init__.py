"""The message bus way in: producers publish events; ``notifier ingest`` stores them.

``producer`` is the billing side's library (validate, publish, confirms);
``bus`` the exchange and queues; ``consumer`` stores what arrives through the
same contract as the API; ``files`` and ``sources`` read event files (CSV,
JSON lines); ``dlq`` holds what could not be stored. A way in: it may import
the runtime, ``events``, ``queues`` and the wiring.
"""
