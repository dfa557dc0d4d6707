"""flagctl: the command-line client of the command and query services."""
