"""People who sign in to the web pages: users, their passwords and sessions.

``service`` creates users (argon2 hashes), checks sign-ins with the lockout
and binds agents; ``sessions`` issues and ends the signed-in sessions. May
import ``auth`` (the role model, key hashing), ``audit``, ``escalation``
(agents) and the wiring's floor.
"""
