"""Passes over the graph IR: small pure functions (graph in, facts or a new graph out)."""
