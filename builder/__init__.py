"""Builds: the durable build queue, workers, build contexts, buildah/docker backends, build logs."""
