"""Rollouts: the routing table, canary analysis, the controller loop and the admin API."""
