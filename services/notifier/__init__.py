"""The notifier: tells Slack channels and webhooks that a flag changed.

A consumer of the change topic in its own group. `subscriptions`, `notices`, `messages` and
`retries` are pure; `ports` says what the rest needs; `directory` folds the subscriptions from the
log (`flagcore.subscriptions`) and opens their secrets; `sender`, `guard`, `store` and `consumer`
are the adapters; `bootstrap` is the only module that wires them.
"""
