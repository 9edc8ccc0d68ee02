"""User administration and the audit-trail page."""
