"""Publishing work to the broker, and the broker's configuration.

``celery_config`` derives the Celery configuration from the settings (one
queue per channel, routes by task name, the beat schedule); ``dispatch``
publishes tasks only after the commit that made their work; ``fs_transport``
is the embedded mode's broker. It sits below the flows and the services that
enqueue, apart from ``worker`` (the app and its tasks), which imports the
flows. May import ``policy``, ``channels`` and ``settings``.
"""
