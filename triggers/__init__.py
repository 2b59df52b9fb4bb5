"""Build triggers: git push webhooks, signatures, skip rules, tag templates, deploy keys, clones."""
