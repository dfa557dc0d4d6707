"""Reading the flag-change log: what every reader of the topic shares, services and SDK alike."""
