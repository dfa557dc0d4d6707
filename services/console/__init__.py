"""The admin console: server-rendered pages for people who never use a CLI.

A client of the command and query APIs, called with the signed-in user's own
API key (kept server-side in the session); it adds no second path to the data.
"""
