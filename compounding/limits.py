"""How long a text may be: one number per kind of field, shared by forms, API schemas and queries.

A limit refuses input that is too long (forms and schemas say so); nothing is cut
silently. Database columns of type Text take any of them.
"""

# A one-line name: an ingredient, a supplier, a formula, a person.
NAME_MAX = 120
# A short label: a strength, an indication, an outcome.
SHORT_TEXT_MAX = 160
# Why something was done: a release, a rejection, a void, a hold, a count correction.
REASON_MAX = 2000
# A note beside a reason, or a deviation note.
NOTE_MAX = 2000
# Free notes of a batch, a session or a recall, and a recall's outcome.
NOTES_MAX = 5000
# A formula's preparation instructions.
INSTRUCTIONS_MAX = 20000
# What a search box takes (lots, batches, patients): the page and the API agree.
SEARCH_MAX = 120
# A scanned code: a GS1 string or a label's code.
SCAN_MAX = 5000
# Rows of one page of a list, on the pages and in the API.
PER_PAGE_DEFAULT = 50
PER_PAGE_MAX = 200
