"""Transfers between sites: pages, the delivery note, and the reads they share with the API."""
