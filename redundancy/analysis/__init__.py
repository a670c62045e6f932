"""Analyses on activation matrices: similarity, clustering, probes, ranking, transfer, timing."""
