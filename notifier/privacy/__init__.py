"""Personal data and outside text, made safe: masking, and the text rules for input.

``masking`` shows phones, emails, addresses and account numbers as logs,
lists and errors may show them; ``text`` says what a string from outside may
hold (no NUL, lone surrogates, controls, bidi overrides). The floor of the
house: imports nothing of notifier.
"""
