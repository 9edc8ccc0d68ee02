"""Formula pages: master formulation records, their versions, approval and retirement."""
