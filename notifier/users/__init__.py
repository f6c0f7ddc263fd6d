"""People who sign in to the web pages: users, their passwords and sessions."""
