"""Serving primitives for interactive front ends: shared prediction stores, model pools and session objects.

Below the studies: what a session computes from the studies (task vectors, merges) is given to it by ``app/``."""
