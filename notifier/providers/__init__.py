"""The providers behind the channels as this service runs them.

``selection`` says which providers each channel uses, in order and with
which weights and options, from the settings alone (real ones when their
credentials are set, the sandbox otherwise); ``ratelimit`` the rates that hold
across every process (provider sends, and the API's requests per key);
``circuits`` each provider's circuit, open while our account with it is
refused, shared by every process the same way; ``simulated`` the
simulators started beside the service. May import ``channels``, ``settings``
and ``db``.
"""
