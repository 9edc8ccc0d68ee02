"""The rows of the plan, table by table, with their ledger and audit rows."""

import itertools
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import numpy as np

from ..models import (
    AdverseEvent,
    AuditEvent,
    Batch,
    BatchComponent,
    Lot,
    Patient,
    SessionUse,
    Signature,
    StockMovement,
    TreatmentSession,
    Vial,
)
from ..models.patient import fold
from ..services import audit
from ..services.bud import BUD_TABLE_VERSION
from ..services.clock import clinic_zone, utcnow
from ..services.codes import vial_code
from .codes import Start, move_counters, new_batch_codes
from .people import write_people
from .plan import Plan
from .readings import write_readings
from .spec import (
    DAY,
    EVENT_TYPES,
    EVENT_WEIGHTS,
    FIRST_NAMES,
    HOUR,
    LAST_NAMES,
    SCALE_USERS,
    TRACE_LOT_PREFIX,
    Summary,
    dec,
    moment,
)
from .writer import Writer, reserve_ids

# Why a synthetic lot was released without a certificate file (it names one by reference only).
SCALE_NO_COA_REASON = "Synthetic data set: certificate held by reference"


class AuditLog:
    """Audit rows appended to the chain in time order, hashed as services.audit.record hashes them."""

    def __init__(self):
        self.pending: list[tuple[int, int, dict]] = []

    def add(self, seconds: int, actor: tuple | None, action: str, entity_type: str, entity_id: int | None, *,
            old=None, new=None, reason: str = "synthetic scale data (seed-scale)") -> None:
        self.pending.append((seconds, len(self.pending), {
            "occurred_at": moment(seconds), "actor_id": actor[0] if actor else None,
            "actor_name": actor[1] if actor else "system", "action": action, "entity_type": entity_type,
            "entity_id": entity_id, "old_values": audit.jsonable(old) if old is not None else None,
            "new_values": audit.jsonable(new) if new is not None else None, "reason": reason}))

    def rows(self, first_id: int, prev_hash: str) -> Iterator[dict]:
        self.pending.sort(key=lambda p: (p[0], p[1]))
        key = audit.audit_key()
        for offset, (_, _, row) in enumerate(self.pending):
            row["prev_hash"] = prev_hash
            row["hash_scheme"] = audit.KEYED_SCHEME
            row["hash"] = prev_hash = audit.chain_hash(prev_hash, SimpleNamespace(**row), key=key)
            row["id"] = first_id + offset
            yield row


def write_all(writer: Writer, plan: Plan, start: Start, log: AuditLog, chain) -> Summary:
    """Every bulk table in turn; the order is fixed, as each step draws from the plan's random generator.

    `chain` (scale.chain.Chain): the sites' ids, locations and staff, by site index."""
    rows = _Rows(writer, plan, start, log, chain)
    rows.patients()
    rows.lots()
    rows.batches()
    rows.batch_components()
    rows.signatures()
    rows.sessions()
    rows.vials()
    rows.session_uses()
    rows.stock_movements()
    rows.adverse_events()
    # Their own generator: the fridges' readings leave every other draw as it was.
    readings = write_readings(writer, chain.fridge, rows.now, plan.size.seed, log)
    people = write_people(writer, rows.now, log)
    trace = rows.audit_events()
    move_counters(writer.connection, start, rows.lot_codes)
    summary = Summary(counts=writer.counts, trace_lot=trace)
    summary.counts.setdefault("excursions", readings.get("excursions", 0))
    for key, value in people.items():
        summary.counts.setdefault(key, value)
    return summary


class _Rows:
    """What the tables share: reserved ids, the new codes, the staff, and who did what in each batch."""

    def __init__(self, writer: Writer, plan: Plan, start: Start, log: AuditLog, chain):
        self.writer, self.plan, self.start, self.log, self.chain = writer, plan, start, log, chain
        self.rng, refs = plan.rng, plan.refs
        self.now = utcnow()
        people = refs.users
        self.pharmacist1, self.pharmacist2 = people["scale.pharmacist1"], people["scale.pharmacist2"]
        self.technician = people["scale.technician"]
        self.practitioners = [people[u] for u, _, r in SCALE_USERS if r == "practitioner"] + [self.pharmacist1]
        self.by_id = {v[0]: v for v in people.values()}
        # Sites: the hub (index 0) works with the accounts above; every other site with its own
        # pharmacist (receives, compounds) and practitioner (treats), appended to the practitioners.
        self.hub_practitioners = len(self.practitioners)
        if plan.sites > 1:
            self.practitioners += chain.practitioners[1:]
            self.by_id.update({p[0]: p for p in chain.pharmacists + chain.practitioners})
        site_ids = np.array(chain.site_ids, dtype=np.int64)
        cold = np.array(chain.fridge if plan.sites > 1 else chain.default_location, dtype=np.int64)
        room = np.array(chain.default_location, dtype=np.int64)
        lot_cold = np.array([refs.ingredient_storage.get(i) in ("fridge", "freezer")
                             for i in plan.l_ingredient.tolist()] or [False], dtype=bool)[:len(plan.l_ingredient)]
        batch_cold = np.array([f.storage in ("fridge", "freezer") for f in refs.formulas])[plan.b_formula]
        self.l_site_id, self.b_site_id = site_ids[plan.l_site], site_ids[plan.b_site]
        self.l_location = np.where(lot_cold, cold[plan.l_site], room[plan.l_site])
        self.b_location = np.where(batch_cold, cold[plan.b_site], room[plan.b_site])
        self.s_site_id = site_ids[plan.s_site]
        self.n_lots, self.n_batches, self.n_sessions = len(plan.l_received), plan.size.batches, len(plan.s_time)
        self.n_uses, self.n_components = len(plan.u_batch), len(plan.c_batch)
        self.n_vials = len(plan.v_batch)
        self.n_events = max(1, self.n_sessions // 1000) if self.n_sessions else 0
        lot_moves = self.n_lots + self.n_components + int((plan.l_waste > 0).sum())
        batch_moves = self.n_batches + self.n_uses + len(plan.w_vial)
        self.ids = ids = reserve_ids(writer.connection, {
            Patient.__table__: plan.size.patients, Lot.__table__: self.n_lots, Batch.__table__: self.n_batches,
            BatchComponent.__table__: self.n_components, TreatmentSession.__table__: self.n_sessions,
            SessionUse.__table__: self.n_uses, StockMovement.__table__: lot_moves + batch_moves,
            Vial.__table__: self.n_vials,
            Signature.__table__: self.n_lots + self.n_batches, AdverseEvent.__table__: self.n_events})
        self.lot_id0, self.batch_id0, self.patient_id0 = ids["lots"], ids["batches"], ids["patients"]
        self.session_id0, self.use_id0, self.vial_id0 = ids["treatment_sessions"], ids["session_uses"], ids["vials"]
        self.ingredient_names = {v[0]: k for k, v in refs.ingredients.items()}
        self.ingredient_meta = {v[0]: v for v in refs.ingredients.values()}
        self.lot_codes = [f"L{start.lot_number + i:06d}" for i in range(self.n_lots)]
        self.batch_codes = new_batch_codes(plan, start)
        self.vial_codes = [vial_code(self.batch_codes[b], n, units) for b, n, units in zip(
            plan.v_batch.tolist(), plan.v_number.tolist(), plan.b_units[plan.v_batch].tolist(), strict=True)]

    def patients(self) -> None:
        plan, rng, start, patient_id0 = self.plan, self.rng, self.start, self.patient_id0
        patient_count = plan.size.patients
        first = rng.integers(0, len(FIRST_NAMES), patient_count)
        last = rng.integers(0, len(LAST_NAMES), patient_count)
        births = rng.integers(-7300, 12800, patient_count)  # 1950 to 2005
        created = plan.start - rng.integers(DAY, 365 * DAY, patient_count)

        def patient_rows():
            for i in range(patient_count):
                chart, name = f"SC{start.chart_number + i:07d}", f"{FIRST_NAMES[first[i]]} {LAST_NAMES[last[i]]}"
                yield {"id": patient_id0 + i, "chart_number": chart, "chart_key": fold(chart), "name": name,
                       "name_key": fold(name), "birth_on": date(1970, 1, 1) + timedelta(days=int(births[i])),
                       "phone": f"+44 20 7946 {i % 10000:04d}" if i % 5 < 2 else "",
                       "email": f"patient{start.chart_number + i}@example.org" if i % 2 else "",
                       "created_at": moment(created[i])}

        self.writer.insert(Patient.__table__, patient_rows())

    def lots(self) -> None:
        """Received by the technician, released an hour later by a pharmacist (signed, audited)."""
        plan, log, lot_codes, lot_id0 = self.plan, self.log, self.lot_codes, self.lot_id0
        technician, pharmacist1 = self.technician, self.pharmacist1
        l_site_id, l_location = self.l_site_id.tolist(), self.l_location.tolist()
        receivers = self.receivers = [technician] + [p for p in self.chain.pharmacists[1:]]
        l_site = plan.l_site.tolist()

        def lot_rows():
            for i in range(self.n_lots):
                receiver = receivers[l_site[i]]
                ingredient_id = int(plan.l_ingredient[i])
                _, unit, gtin = self.ingredient_meta[ingredient_id]
                received = int(plan.l_received[i])
                trace = i == plan.trace_lot
                number = f"{TRACE_LOT_PREFIX}{lot_codes[i]}" if trace else f"SC-{lot_codes[i]}"
                quantity = dec(plan.l_quantity[i], 3)
                yield {"id": lot_id0 + i, "code": lot_codes[i], "ingredient_id": ingredient_id,
                       "supplier": "Scale Supplies Ltd", "supplier_lot_number": number, "gtin": gtin,
                       "received_at": moment(received), "received_by_id": receiver[0],
                       "expires_on": plan.l_expires[i], "quantity_received": quantity,
                       "remaining": dec(plan.l_remaining[i], 3), "coa_reference": f"CoA {number}",
                       "location": "Store " + "ABCD"[i % 4], "status": str(plan.l_status[i]), "status_reason": "",
                       "released_at": moment(received + HOUR), "released_by_id": pharmacist1[0],
                       # Synthetic lots carry a certificate reference, no certificate file.
                       "released_without_coa_reason": SCALE_NO_COA_REASON,
                       "location_id": l_location[i], "site_id": l_site_id[i]}
                log.add(received, receiver, "lot.received", "lot", lot_id0 + i, new={
                    "code": lot_codes[i], "ingredient": self.ingredient_names[ingredient_id],
                    "supplier": "Scale Supplies Ltd", "supplier_lot_number": number, "gtin": gtin,
                    "expires_on": plan.l_expires[i], "quantity": quantity, "coa_reference": f"CoA {number}",
                    "location": "Store " + "ABCD"[i % 4], "status": "quarantine"})
                snapshot = {"remaining": quantity, "status_reason": ""}
                log.add(received + HOUR, pharmacist1, "lot.released", "lot", lot_id0 + i,
                        old={"status": "quarantine", "released_without_coa_reason": "", **snapshot},
                        new={"status": "released", "released_without_coa_reason": SCALE_NO_COA_REASON,
                             **snapshot})

        self.writer.insert(Lot.__table__, lot_rows())

    def batches(self) -> None:
        """Compounded, then verified (signed) by a pharmacist who did not compound them."""
        plan, log, batch_codes, lot_codes = self.plan, self.log, self.batch_codes, self.lot_codes
        batch_id0 = self.batch_id0
        pharmacist1, pharmacist2, by_id, n_batches = self.pharmacist1, self.pharmacist2, self.by_id, self.n_batches
        formulas_ = plan.refs.formulas
        self.compounder = compounder = np.where(plan.b_by_pharmacist, pharmacist1[0], self.technician[0])
        self.verifier = verifier = np.where(plan.b_by_pharmacist, pharmacist2[0],
                                            np.where(self.rng.random(n_batches) < 0.5, pharmacist1[0], pharmacist2[0]))
        if plan.sites > 1:  # away from the hub, the site's pharmacist compounds; a chain pharmacist verifies
            away = plan.b_site > 0
            site_pharmacist = np.array([0] + [p[0] for p in self.chain.pharmacists[1:]], dtype=np.int64)
            compounder[away] = site_pharmacist[plan.b_site[away]]
            verifier[away] = pharmacist2[0]
        component_start = np.searchsorted(plan.c_batch, np.arange(n_batches + 1))
        b_site_id, b_location = self.b_site_id.tolist(), self.b_location.tolist()

        def batch_rows():
            for i in range(n_batches):
                formula = formulas_[plan.b_formula[i]]
                status, compounded = str(plan.b_status[i]), int(plan.b_time[i])
                verified = status not in ("prepared", "rejected")
                total = dec(plan.b_total[i], 1)
                yield {"id": batch_id0 + i, "code": batch_codes[i], "formula_id": formula.id,
                       "units": int(plan.b_units[i]), "total_volume_ml": total,
                       "remaining_volume_ml": dec(plan.b_final[i], 1),
                       "preparation_started_at": moment(compounded), "compounded_at": moment(compounded),
                       "compounded_by_id": int(compounder[i]), "protect_from_light": formula.protect_from_light,
                       "verified_at": moment(plan.b_verified[i]) if verified else None,
                       "verified_by_id": int(verifier[i]) if verified else None,
                       "beyond_use_at": moment(plan.b_bud[i]), "storage": formula.storage, "notes": "",
                       "deviations": "", "status": status, "required_tests": "",
                       "status_reason": "failed visual inspection (synthetic)" if status == "rejected" else "",
                       "discard_reason": "expired" if status == "discarded" else None,
                       "location_id": b_location[i], "site_id": b_site_id[i]}
                parts = range(component_start[i], component_start[i + 1])
                log.add(compounded, by_id[int(compounder[i])], "batch.compounded", "batch", batch_id0 + i, new={
                    "code": batch_codes[i], "formula": formula.label, "units": int(plan.b_units[i]),
                    "total_volume_ml": total, "beyond_use_at": moment(plan.b_bud[i]),
                    "bud_table": BUD_TABLE_VERSION, "deviations": "",
                    "vials": {"first": self.vial_codes[plan.v_first[i]],
                              "last": self.vial_codes[plan.v_first[i] + plan.b_units[i] - 1],
                              "dose": "multiple" if plan.b_multiple[i] else "single",
                              "in_use_hours": formula.in_use_hours if plan.b_multiple[i] else None},
                    "components": [{"lot": lot_codes[plan.c_lot[k]], "quantity": dec(plan.c_qty[k], 3),
                                    "scanned": bool(plan.c_scanned[k])} for k in parts]})
                if status != "prepared":
                    old = {"status": "prepared", "remaining_volume_ml": total, "status_reason": "",
                           "discard_reason": None}
                    new = {**old, "status": "rejected" if status == "rejected" else "released"}
                    if status == "rejected":  # its vials discarded, their volume written off
                        new["remaining_volume_ml"] = Decimal(0)
                    action = "batch.rejected" if status == "rejected" else "batch.released"
                    log.add(int(plan.b_verified[i]), by_id[int(verifier[i])], action, "batch", batch_id0 + i,
                            old=old, new=new)
                if status == "discarded":
                    left = dec(plan.b_remaining[i], 1)
                    log.add(int(plan.b_discard_time[i]), pharmacist1, "batch.discarded", "batch", batch_id0 + i,
                            old={"status": "released", "remaining_volume_ml": left, "status_reason": "",
                                 "discard_reason": None},
                            new={"status": "discarded", "remaining_volume_ml": Decimal(0), "status_reason": "",
                                 "discard_reason": "expired"}, reason="expired")

        self.writer.insert(Batch.__table__, batch_rows())

    def batch_components(self) -> None:
        """Each with the copy of its ingredient and lot, as compounding writes it."""
        plan, first_id, lot_id0, batch_id0 = self.plan, self.ids["batch_components"], self.lot_id0, self.batch_id0
        copies, lot_codes = plan.refs.copies, self.lot_codes

        def component_rows():
            for k in range(self.n_components):
                lot, ingredient_id = int(plan.c_lot[k]), int(plan.l_ingredient[plan.c_lot[k]])
                number = f"{TRACE_LOT_PREFIX}{lot_codes[lot]}" if lot == plan.trace_lot else f"SC-{lot_codes[lot]}"
                yield {"id": first_id + k, "batch_id": batch_id0 + int(plan.c_batch[k]), "lot_id": lot_id0 + lot,
                       "ingredient_id": ingredient_id, "theoretical_quantity": dec(plan.c_qty[k], 3),
                       "quantity": dec(plan.c_qty[k], 3), "scanned": bool(plan.c_scanned[k]),
                       **copies[ingredient_id], "lot_code": lot_codes[lot], "supplier_lot_number": number,
                       "lot_expires_on": plan.l_expires[lot]}

        self.writer.insert(BatchComponent.__table__, component_rows())

    def signatures(self) -> None:
        """A pharmacist's release of each lot, then each batch's verification or rejection."""
        plan, pharmacist1 = self.plan, self.pharmacist1

        def signature_rows():
            next_id = itertools.count(self.ids["signatures"])
            for i in range(self.n_lots):
                yield {"id": next(next_id), "signer_id": pharmacist1[0], "signer_name": pharmacist1[1],
                       "signed_at": moment(plan.l_received[i] + HOUR), "meaning": "released", "entity_type": "lot",
                       "entity_id": self.lot_id0 + i}
            for i in range(self.n_batches):
                status = str(plan.b_status[i])
                if status != "prepared":
                    signer = self.by_id[int(self.verifier[i])]
                    yield {"id": next(next_id), "signer_id": signer[0], "signer_name": signer[1],
                           "signed_at": moment(plan.b_verified[i]), "meaning": "rejected" if status == "rejected"
                           else "verified", "entity_type": "batch", "entity_id": self.batch_id0 + i}

        self.writer.insert(Signature.__table__, signature_rows())

    def sessions(self) -> None:
        plan, rng, n_sessions = self.plan, self.rng, self.n_sessions
        if plan.sites == 1:
            self.s_patient = s_patient = rng.integers(0, plan.size.patients, n_sessions)
            self.s_practitioner = s_practitioner = rng.integers(0, len(self.practitioners), n_sessions)
        else:
            # A site treats its own patients (a share of them by its share of the work); the hub's sessions
            # are the hub practitioners', another site's its practitioner's.
            counts = np.maximum(1, np.floor(plan.site_weight * plan.size.patients).astype(np.int64))
            counts[0] = max(1, plan.size.patients - int(counts[1:].sum()))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) % plan.size.patients
            counts = np.minimum(counts, plan.size.patients)
            site = plan.s_site
            self.s_patient = s_patient = (starts[site] + (rng.random(n_sessions) * counts[site]).astype(np.int64)) \
                % plan.size.patients
            self.s_practitioner = s_practitioner = np.where(
                site == 0, rng.integers(0, self.hub_practitioners, n_sessions), self.hub_practitioners + site - 1)
        first_use = np.searchsorted(plan.u_session, np.arange(n_sessions))
        s_site_id = self.s_site_id.tolist()

        def session_rows():
            for s in range(n_sessions):
                performed = int(plan.s_time[s])
                formula = plan.refs.formulas[plan.b_formula[plan.u_batch[first_use[s]]]]
                yield {"id": self.session_id0 + s, "patient_id": self.patient_id0 + int(s_patient[s]),
                       "practitioner_id": self.practitioners[s_practitioner[s]][0],
                       "performed_at": moment(performed), "indication": formula.indication, "notes": "",
                       "recorded_at": moment(min(performed + 600, plan.now)),
                       "voided_at": None, "voided_by_id": None, "void_reason": "", "site_id": s_site_id[s]}

        self.writer.insert(TreatmentSession.__table__, session_rows())

    def vials(self) -> None:
        """Every unit of every batch, as compounding makes them, each in the state its uses left it."""
        plan, batch_id0, session_id0, codes = self.plan, self.batch_id0, self.session_id0, self.vial_codes
        formulas_ = plan.refs.formulas
        why = {}  # vial -> its write-off's reason, for a vial discarded
        for v, w, b in zip(plan.w_vial.tolist(), plan.w_why.tolist(), plan.v_batch[plan.w_vial].tolist(),
                           strict=True):
            if w == 1:
                why[v] = "in-use period ended (synthetic)"
            elif w == 2:
                why[v] = f"batch {self.batch_codes[b]} discarded: expired"
            elif w == 3:
                why[v] = f"batch {self.batch_codes[b]} rejected: failed visual inspection (synthetic)"

        def vial_rows():
            # What a batch's vials share, once per batch; the rest per vial from plain lists.
            shared = []
            b_location, b_site_id = self.b_location.tolist(), self.b_site_id.tolist()
            for b, (f, multiple, compounded) in enumerate(zip(plan.b_formula.tolist(), plan.b_multiple.tolist(),
                                                               plan.b_time.tolist(), strict=True)):
                formula = formulas_[f]
                shared.append((batch_id0 + b, "multiple" if multiple else "single",
                               formula.in_use_hours if multiple else None, dec(formula.unit_tenths, 1),
                               moment(compounded), b_location[b], b_site_id[b]))
            first_use = np.maximum(plan.v_first_use, 0)
            first_session = np.where(plan.v_first_use >= 0, session_id0 + plan.u_session[first_use], -1).tolist()
            v_batch, v_number, v_status = plan.v_batch.tolist(), plan.v_number.tolist(), plan.v_status.tolist()
            v_punctured, v_spent = plan.v_punctured.tolist(), plan.v_spent.tolist()
            v_remaining = plan.v_remaining.tolist()
            volumes = {}
            for v in range(self.n_vials):
                batch_id, dose, hours, fill, created, location_id, site_id = shared[v_batch[v]]
                left, punctured, spent, session = v_remaining[v], v_punctured[v], v_spent[v], first_session[v]
                remaining = volumes.get(left)
                if remaining is None:
                    remaining = volumes[left] = dec(left, 1)
                yield {"id": self.vial_id0 + v, "batch_id": batch_id, "number": v_number[v], "code": codes[v],
                       "dose": dose, "in_use_hours": hours, "volume_ml": fill, "remaining_ml": remaining,
                       "status": v_status[v], "status_reason": why.get(v, ""), "legacy": False,
                       "punctured_at": moment(punctured) if punctured >= 0 else None,
                       "first_session_id": session if session >= 0 else None,
                       "spent_at": moment(spent) if spent >= 0 else None, "created_at": created,
                       "location_id": location_id, "site_id": site_id}

        self.writer.insert(Vial.__table__, vial_rows())

    def session_uses(self) -> None:
        plan, formulas_, session_id0, batch_id0 = self.plan, self.plan.refs.formulas, self.session_id0, self.batch_id0
        area_pick = self.rng.integers(0, 4, self.n_uses)
        self.writer.insert(SessionUse.__table__, (
            {"id": self.use_id0 + k, "session_id": session_id0 + int(plan.u_session[k]),
             "batch_id": batch_id0 + int(plan.u_batch[k]), "vial_id": self.vial_id0 + int(plan.u_vial[k]),
             "volume_ml": dec(plan.u_tenths[k], 1),
             "area": (areas := formulas_[plan.b_formula[plan.u_batch[k]]].areas)[area_pick[k] % len(areas)]}
            for k in range(self.n_uses)))

    def stock_movements(self) -> None:
        """The ledger: per owner in time order with running balances, written in global time order."""
        plan = self.plan
        self.writer.insert(StockMovement.__table__, _movements(
            self.plan, self.ids, self.batch_codes, self.vial_codes, (self.technician, self.pharmacist1),
            self.compounder, self.verifier, self.practitioners, self.s_practitioner, self.s_patient, self.start,
            places=(np.array([r[0] for r in self.receivers])[plan.l_site], self.l_location, self.b_location)))

    def adverse_events(self) -> None:
        """A few, a handful of them severe, so quality signals show."""
        plan, rng, n_events, s_practitioner = self.plan, self.rng, self.n_events, self.s_practitioner
        event_sessions = np.sort(rng.choice(self.n_sessions, size=n_events, replace=False)) if n_events else []
        event_types = rng.choice(len(EVENT_TYPES), p=EVENT_WEIGHTS, size=n_events)
        today = plan.today

        def event_rows():
            for k, s in enumerate(event_sessions):
                performed = int(plan.s_time[s])
                kind = EVENT_TYPES[event_types[k]]
                severe = kind in ("infection", "necrosis", "allergic_reaction")
                onset = min((moment(performed).astimezone(clinic_zone()).date() + timedelta(days=k % 3)), today)
                yield {"id": self.ids["adverse_events"] + k, "session_id": self.session_id0 + int(s), "type": kind,
                       "severity": "severe" if severe else ("mild", "moderate")[k % 2], "onset_on": onset,
                       "outcome": "resolved" if not severe else "referred", "notes": "",
                       "recorded_at": moment(min(performed + (1 + k % 4) * DAY, plan.now - 60)),
                       "recorded_by_id": self.practitioners[s_practitioner[s]][0]}

        self.writer.insert(AdverseEvent.__table__, event_rows())

    def audit_events(self) -> tuple | None:
        """One summary row per bulk table, then every audit row in time order; returns the trace lot."""
        plan, log, ids, writer = self.plan, self.log, self.ids, self.writer
        counts = dict(writer.counts)
        trace = None
        if plan.trace_lot is not None:
            trace_batches = set(plan.trace_batches.tolist())
            trace = (self.lot_id0 + plan.trace_lot, self.lot_codes[plan.trace_lot], len(trace_batches),
                     int(sum(1 for b in plan.u_batch.tolist() if b in trace_batches)))
        for table, first_id in (("patients", self.patient_id0), ("treatment_sessions", self.session_id0),
                                ("session_uses", self.use_id0), ("stock_movements", ids["stock_movements"]),
                                ("adverse_events", ids["adverse_events"]), ("vials", self.vial_id0),
                                ("batch_components", ids["batch_components"]), ("signatures", ids["signatures"])):
            if counts.get(table):
                log.add(int(self.now.timestamp()), None, "scale.rows_loaded", table, None,
                        new={"first_id": first_id, "last_id": first_id + counts[table] - 1, "rows": counts[table]})
        log.add(int(self.now.timestamp()), None, "scale.seeded", "scale", None, new={
            "seed": plan.size.seed, "counts": counts, "trace_lot": trace and {"id": trace[0], "code": trace[1]}})
        audit_id0 = reserve_ids(writer.connection, {AuditEvent.__table__: len(log.pending)})["audit_events"]
        writer.insert(AuditEvent.__table__, log.rows(audit_id0, self.start.last_hash))
        return trace


def _movements(plan: Plan, ids, batch_codes, vial_codes, staff, compounder, verifier, practitioners,
               s_practitioner, s_patient, start, places) -> Iterator[dict]:
    """Every ledger row, each with its owner's balance after it, in the order things happened.

    A use and a write-off of a batch name the vial they changed (its balance: its fill plus those rows).
    Each row names its lot's or batch's location; `places`: (each lot's receiver, each lot's location,
    each batch's location).
    """
    technician, pharmacist = staff
    lot_id0, batch_id0, vial_id0 = ids["lots"], ids["batches"], ids["vials"]
    n_lots, n_batches = len(plan.l_received), plan.size.batches
    waste_lots = np.flatnonzero(plan.l_waste > 0)
    w_batch = plan.v_batch[plan.w_vial]
    # kind codes: 0 receive, 1 consume, 2 waste (lots); 3 receive, 4 use, 5 a vial's write-off (batches)
    owner = np.concatenate([np.arange(n_lots), plan.c_lot, waste_lots,
                            n_lots + np.arange(n_batches), n_lots + plan.u_batch, n_lots + w_batch])
    when = np.concatenate([plan.l_received, plan.b_time[plan.c_batch], plan.l_waste_time[waste_lots],
                           plan.b_time, plan.u_time, plan.w_time])
    amount = np.concatenate([plan.l_quantity, -plan.c_qty, -plan.l_waste[waste_lots],
                             plan.b_total, -plan.u_tenths, -plan.w_tenths])
    kind = np.concatenate([np.zeros(n_lots, int), np.ones(len(plan.c_lot), int), np.full(len(waste_lots), 2),
                           np.full(n_batches, 3), np.full(len(plan.u_batch), 4), np.full(len(plan.w_vial), 5)])
    ref = np.concatenate([np.arange(n_lots), np.arange(len(plan.c_lot)), waste_lots, np.arange(n_batches),
                          np.arange(len(plan.u_batch)), np.arange(len(plan.w_vial))])
    # At one moment a use comes before the write-off of its single-dose vial's remainder.
    sequence = np.arange(len(owner))
    by_owner = np.lexsort((sequence, when, owner))
    sorted_owner, sorted_amount = owner[by_owner], amount[by_owner]
    running = np.cumsum(sorted_amount)
    group_first = np.searchsorted(sorted_owner, sorted_owner)
    base = np.where(group_first > 0, running[group_first - 1], 0)
    balance = np.empty_like(running)
    balance[by_owner] = running - base
    if (balance < 0).any():
        raise AssertionError("a planned balance went below zero")
    movement_id0 = ids["stock_movements"]
    zone = clinic_zone()
    u_vial, w_vial, w_why, w_use = plan.u_vial, plan.w_vial, plan.w_why, plan.w_use
    receiver, location = places[0].tolist(), places[1].tolist() + places[2].tolist()  # by owner
    for position, k in enumerate(np.lexsort((sequence, when)).tolist()):
        code, r, o = int(kind[k]), int(ref[k]), int(owner[k])
        is_lot = code < 3
        row = {"id": movement_id0 + position, "lot_id": lot_id0 + o if is_lot else None,
               "batch_id": None if is_lot else batch_id0 + o - n_lots, "vial_id": None,
               "occurred_at": moment(when[k]),
               "quantity": dec(amount[k], 3 if is_lot else 1), "balance_after": dec(balance[k], 3 if is_lot else 1),
               "reason": "", "note": "", "reference_type": "", "reference_id": None, "location_id": location[o]}
        if code == 0:
            row.update(kind="receive", actor_id=receiver[o], note="received from Scale Supplies Ltd",
                       reference_type="lot", reference_id=lot_id0 + r)
        elif code == 1:
            b = int(plan.c_batch[r])
            row.update(kind="consume", actor_id=int(compounder[b]), reference_type="batch",
                       reference_id=batch_id0 + b, note=f"compounded into {batch_codes[b]}")
        elif code == 2:
            row.update(kind="waste", actor_id=receiver[o], reason="expired",
                       note=f"expired on {plan.l_expires[r].isoformat()} (synthetic)")
        elif code == 3:
            formula = plan.refs.formulas[plan.b_formula[r]]
            row.update(kind="receive", actor_id=int(compounder[r]), reference_type="batch",
                       reference_id=batch_id0 + r,
                       note=f"{int(plan.b_units[r])} × {dec(formula.unit_tenths, 1).normalize():f} mL compounded")
        elif code == 4:
            s = int(plan.u_session[r])
            row.update(kind="use", actor_id=practitioners[s_practitioner[s]][0], reference_type="session_use",
                       reference_id=ids["session_uses"] + r, vial_id=vial_id0 + int(u_vial[r]),
                       note=f"patient SC{start.chart_number + int(s_patient[s]):07d}")
        else:
            v, why, b = int(w_vial[r]), int(w_why[r]), o - n_lots
            row.update(kind="waste", vial_id=vial_id0 + v)
            if why == 0:
                s = int(plan.u_session[w_use[r]])
                row.update(actor_id=practitioners[s_practitioner[s]][0], reason="single_dose_remainder",
                           reference_type="treatment_session", reference_id=ids["treatment_sessions"] + s,
                           note=f"single-dose vial {vial_codes[v]} spent in session {ids['treatment_sessions'] + s}")
            elif why == 1:
                row.update(actor_id=pharmacist[0], reason="in_use_period_ended", reference_type="vial",
                           reference_id=vial_id0 + v, note=f"{vial_codes[v]}: in-use period ended (synthetic)")
            elif why == 2:
                row.update(actor_id=pharmacist[0], reason="expired", reference_type="discard",
                           reference_id=batch_id0 + b,
                           note=f"batch {batch_codes[b]} discarded: beyond-use date passed "
                                f"{moment(plan.b_bud[b]).astimezone(zone):%Y-%m-%d} (synthetic)")
            else:
                row.update(actor_id=int(verifier[b]), reason="rejected", reference_type="reject",
                           reference_id=batch_id0 + b, note=f"batch {batch_codes[b]} rejected")
        yield row
