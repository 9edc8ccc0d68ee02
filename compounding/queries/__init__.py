"""Read queries: one module per area, each with its list filters and its list and detail queries.

Pages, the API and the exports read through here, so a filter means the same wherever it
arrives. Nothing here writes: the services do.
"""
