"""Who may do what: API keys, roles, and the policy both HTTP services enforce."""
