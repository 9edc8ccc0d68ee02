"""How long a text may be: one number per kind of field, shared by forms, API schemas and queries.

A limit refuses input that is too long (forms and schemas say so); nothing is cut
silently. Database columns of type Text take any of them.
"""

# A one-line name: an ingredient, a supplier, a person's printed name, a storage location,
# an injection area, a certificate's reference.
NAME_MAX = 120
# A short label: a formula's or a patient's name, an e-mail, an indication, an outcome.
SHORT_TEXT_MAX = 160
# A few words: a supplier's lot number, a strength, a dosage form, a unit, an audit action.
LABEL_MAX = 60
# A code read off a label or a chart: a chart number, a batch code, a phone number, a record type.
CODE_MAX = 40
# A formula's code, kept by every version.
FORMULA_CODE_MAX = 30
# An account's username, and a password as typed (long passphrases welcome; a hash costs the same).
USERNAME_MAX = 64
PASSWORD_MAX = 200
# Why something was done: a release, a rejection, a void, a hold, a count correction.
REASON_MAX = 2000
# A note beside a reason, or a deviation note.
NOTE_MAX = 2000
# Free notes of a batch, a session or a recall, and a recall's outcome.
NOTES_MAX = 5000
# A formula's preparation instructions.
INSTRUCTIONS_MAX = 20000
# What a search box takes (lots, batches, patients, ingredients, formulas): the page and the API agree.
SEARCH_MAX = 120
# A scanned code: a GS1 string or a label's code.
SCAN_MAX = 5000
# Rows of one page of a list, on the pages and in the API.
PER_PAGE_DEFAULT = 50
PER_PAGE_MAX = 200
