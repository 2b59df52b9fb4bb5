"""Accounts: users, organizations, robots, teams, tokens, audit log, namespace rules."""
