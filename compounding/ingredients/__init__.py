"""Ingredient pages: the raw materials the clinic stocks."""
