"""The rules: small functions that check, change, write ledger and audit rows, and commit at one boundary."""
