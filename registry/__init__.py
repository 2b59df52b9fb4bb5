"""The OCI distribution registry: /v2 API, token auth, blobs, manifests, tags, storage."""
