"""Local stand-ins for the providers, speaking their wire formats.

They let the embedded mode, the tests and the benchmarks run the real SDKs
(twilio, aiosmtplib, firebase-admin) with no internet: each takes a latency
and a failure mix, and some recipients fail on purpose (see each module).
"""
