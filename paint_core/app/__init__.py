"""The application layer: what the CLI and the dashboard share, above the studies and the live sessions.

Finding runs and studies (``runs``), the one file-identity key of every cache (``identity``), background jobs that
run studies (``jobs``), the sessions that combine live pools with the studies (``sessions``) and the answers a page
computes (``answers``). A page reads widgets, calls this layer and draws.
"""
