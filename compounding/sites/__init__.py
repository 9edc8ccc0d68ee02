"""Sites and storage locations: pages."""
