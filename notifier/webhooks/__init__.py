"""Producer callbacks (outbound webhooks): registered URLs and the outbox.

``models`` holds endpoints and owed callbacks, ``service`` registration, the
URL check, the delivery-outcome callbacks, ``owe`` for any other domain's
callbacks, publishing after commit and the claim/record of each POST (the
POST itself is ``flows.producer_callbacks``). May import ``deliveries``,
``events`` and the wiring's floor.
"""
