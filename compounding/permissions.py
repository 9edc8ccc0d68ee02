"""Who may do what: the one permission map of the application."""

ROLES = ("admin", "pharmacist", "technician", "practitioner", "auditor")

ROLE_LABELS = {
    "admin": "Administrator",
    "pharmacist": "Pharmacist",
    "technician": "Pharmacy technician",
    "practitioner": "Practitioner",
    "auditor": "Auditor (read-only)",
}

EVERYONE = frozenset(ROLES)
STAFF = frozenset({"pharmacist", "technician", "practitioner"})

# permission -> roles that hold it. Reading stock records is open to every signed-in role;
# each change names exactly who may make it. Admins manage accounts, not patients: no
# permission over patient data is theirs, and pages open to them leave patients out.
PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard.view": EVERYONE,
    "users.manage": frozenset({"admin"}),
    "audit.read": frozenset({"admin", "pharmacist", "auditor"}),
    "ingredients.read": EVERYONE,
    "ingredients.write": frozenset({"pharmacist"}),
    "lots.read": EVERYONE,
    "lots.receive": frozenset({"pharmacist", "technician"}),
    "lots.release": frozenset({"pharmacist"}),
    "lots.adjust": frozenset({"pharmacist", "technician"}),
    "formulas.read": EVERYONE,
    "formulas.write": frozenset({"pharmacist"}),
    "formulas.approve": frozenset({"pharmacist"}),
    "batches.read": EVERYONE,
    "batches.compound": frozenset({"pharmacist", "technician"}),
    "batches.verify": frozenset({"pharmacist"}),
    "batches.discard": frozenset({"pharmacist"}),
    # One vial dropped, contaminated or past its in-use period: whoever handles vials.
    "vials.discard": frozenset({"pharmacist", "technician", "practitioner"}),
    # Need-to-know: every page, export or answer that names a patient, even by chart
    # number alone (patients, sessions, traces, a recall's contact list, adverse events).
    "patients.read": frozenset({"pharmacist", "technician", "practitioner", "auditor"}),
    # Who may see who a patient is (name, birth date, contacts). Technicians work by chart number alone.
    "patients.identify": frozenset({"pharmacist", "practitioner", "auditor"}),
    # The patient access log names charts and searches: read as the audit workbook that holds it is.
    "patients.access_log": frozenset({"pharmacist", "auditor"}),
    "patients.write": frozenset({"pharmacist", "practitioner"}),
    "treatments.write": frozenset({"pharmacist", "practitioner"}),
    "adverse_events.write": frozenset({"pharmacist", "practitioner"}),
    "recalls.read": EVERYONE,
    "recalls.open": frozenset({"pharmacist"}),
    "recalls.contact": frozenset({"pharmacist", "technician", "practitioner"}),
    "exports.audit": frozenset({"pharmacist", "auditor"}),
    "imports.lots": frozenset({"pharmacist", "technician"}),
    "scan.use": EVERYONE,
    # A chain: its sites and storage locations, and which users belong where (memberships: users.manage).
    "sites.read": EVERYONE,
    "sites.manage": frozenset({"admin", "pharmacist"}),
    # Stock moved between locations of one site (a shelf to a fridge), and between sites by transfer.
    "stock.move": frozenset({"pharmacist", "technician"}),
    "transfers.read": EVERYONE,
    "transfers.write": frozenset({"pharmacist", "technician"}),
    # A clinic without a pharmacist on site receives what the hub sends: practitioners scan it in.
    "transfers.receive": frozenset({"pharmacist", "technician", "practitioner"}),
    # The cold chain: fridge logs and excursions. Whoever stands by the fridge writes its reading; a
    # sensor's token carries `readings.record` only. A pharmacist decides what an excursion's stock becomes.
    "coldchain.read": EVERYONE,
    "readings.record": frozenset({"pharmacist", "technician", "practitioner"}),
    "readings.import": frozenset({"pharmacist", "technician"}),
    "excursions.decide": frozenset({"pharmacist"}),
    # Qualified people (USP <797>): who reads and records competency results; admins add kinds.
    # Everyone reads their own qualifications (a person's page and its evidence).
    "qualifications.read": frozenset({"admin", "pharmacist", "auditor"}),
    "qualifications.record": frozenset({"admin", "pharmacist"}),
    "qualifications.kinds": frozenset({"admin"}),
    # Equipment at the bench and its calibrations; its certificates are documents.
    "equipment.read": EVERYONE,
    "equipment.manage": frozenset({"admin", "pharmacist"}),
    # The daily digest of a site (DESIGN 10.7): read on its page by those it is written for; admins see the
    # mail outbox, its failures, and send a failed message again.
    "digest.read": frozenset({"admin", "pharmacist"}),
    "mail.manage": frozenset({"admin"}),
    # Whether the background worker runs: exports that no worker takes are shown to admins.
    "jobs.watch": frozenset({"admin"}),
}


def role_can(role: str, permission: str) -> bool:
    try:
        return role in PERMISSIONS[permission]
    except KeyError:
        raise KeyError(f"unknown permission {permission!r}") from None
