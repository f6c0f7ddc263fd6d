"""The providers behind the channels as this service runs them.

``selection`` says which provider each channel uses and with which options,
from the settings alone (real ones when their credentials are set, the
sandbox otherwise); ``ratelimit`` the rates that hold across every process
(provider sends, and the API's requests per key); ``simulated`` the
simulators started beside the service. May import ``channels``, ``settings``
and ``db``.
"""
