"""Outgoing notifications: repository events delivered by webhook, Slack, e-mail and in-app, durably."""
