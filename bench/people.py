"""Figures of qualified people, equipment and documents (DESIGN 10.6) for bench.measure.

- The bench gate: `compound_batch` of one unit at MAIN (two components, their FEFO lots) with
  REQUIRE_QUALIFICATIONS on and the site's balance and hood named, against the same call with the
  requirement off and no equipment registered at that site, measured in the same run as a ratio
  (target <= 1.10), rolled back each time so the data stay as seeded. Statements counted too.
- The team page `/people` (every compounding account of the chain for a chain pharmacist) and
  its API, and the equipment list: p50 against 300 ms.
- Documents on the folder store: a 5 MB PDF and a 12-megapixel JPEG (saved again without its
  metadata) attached and read back, against writing and reading the same bytes as plain files
  (the PDF's ratio target <= 3: its SHA-256 is taken when it is kept and again when it is read;
  the JPEG's re-encoding has a time target, < 2 s).
"""

import io
import os
import sys
import tempfile
import time

import sqlalchemy as sa

from compounding.extensions import db
from compounding.models import Equipment, Formula, Lot, Site, User
from compounding.services.transaction import transaction


class _RolledBack(Exception):
    pass


def _count_statements(engine):
    counted = {"n": 0}

    def count(*_args, **_kwargs):
        counted["n"] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    return counted, lambda: sa.event.remove(engine, "before_cursor_execute", count)


def gate_figures(app, n: int, percentiles) -> dict:
    """compound_batch with the gate (qualifications and equipment) against the same call without it."""
    from compounding.services import batches

    with app.app_context():
        main = db.session.scalar(sa.select(Site.id).where(Site.code == "MAIN"))
        formula_id = db.session.scalar(sa.select(Formula.id).where(Formula.code == "SCALE-HAIR",
                                                                   Formula.status == "approved"))
        bench = list(db.session.scalars(sa.select(Equipment.id).where(Equipment.site_id == main,
                                                                      Equipment.kind.in_(("balance", "hood")))))
        db.session.remove()
    if formula_id is None or not bench:
        return {"skipped": "no SCALE-HAIR formula or no equipment at MAIN: reseed with seed-scale"}

    def once(gated: bool) -> tuple[float, int]:
        with app.app_context():
            app.config["REQUIRE_QUALIFICATIONS"] = gated
            technician = db.session.scalar(sa.select(User).where(User.username == "scale.technician"))
            counted, stop = _count_statements(db.engine)
            try:
                with transaction():
                    if not gated:  # the same site without equipment registered: nothing to check
                        db.session.execute(sa.update(Equipment).where(Equipment.site_id == main)
                                           .values(active=False))
                        db.session.flush()
                    counted["n"] = 0
                    started = time.perf_counter()
                    batches.compound_batch(technician, formula_id, 1, equipment_ids=bench if gated else None)
                    elapsed = (time.perf_counter() - started) * 1000
                    statements = counted["n"]
                    raise _RolledBack
            except _RolledBack:
                return elapsed, statements
            finally:
                stop()
                app.config["REQUIRE_QUALIFICATIONS"] = True
                db.session.remove()

    try:
        once(True), once(False)  # warm-up
        gated, plain, gated_statements, plain_statements = [], [], 0, 0
        for _ in range(n):  # interleaved: a passing slowdown lands on both
            elapsed, gated_statements = once(True)
            gated.append(elapsed)
            elapsed, plain_statements = once(False)
            plain.append(elapsed)
    except Exception as exc:  # noqa: BLE001 - a figure missing is reported, the run goes on
        print(f"bench: compounding gate failed: {exc!r}", file=sys.stderr)
        return {"skipped": f"compound_batch failed: {exc!r}"[:300]}
    g, p = percentiles(gated), percentiles(plain)
    return {"gated": g, "plain": p, "ratio": round(g["p50"] / p["p50"], 3),
            "statements": {"gated": gated_statements, "plain": plain_statements}}


def page_figures(client, app, n: int, timed, percentiles, get) -> dict:
    """The team page (all and due only), its API, and the equipment list, seen by a chain pharmacist."""
    with app.app_context():
        figures = {"people": db.session.scalar(sa.select(sa.func.count()).select_from(User).where(
                       User.active, User.role.in_(("pharmacist", "technician")))),
                   "equipment_items": db.session.scalar(sa.select(sa.func.count()).select_from(Equipment))}
        db.session.remove()
    for name, url in (("team_page", "/people"), ("team_due_page", "/people?due=30"),
                      ("equipment_page", "/equipment")):
        first = client.get(url)
        if first.status_code != 200:
            figures[name] = {"skipped": f"{url} answered {first.status_code}"}
            continue
        figures[name] = percentiles(timed(lambda url=url: get(client, url), n))
    return figures


def _pdf(size: int) -> bytes:
    head = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n% "
    tail = b"\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)).replace(b"\n", b" ") + tail


def _jpeg(width: int = 4000, height: int = 3000) -> bytes:
    from PIL import Image

    image = Image.effect_noise((width, height), 64).convert("RGB")
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def document_figures(app, n: int, percentiles) -> dict:
    """Attach and read back on a folder store of its own (rolled back each time; the folder is removed)."""
    from compounding import storage
    from compounding.services import documents

    pdf, jpeg = _pdf(5 * 1024 * 1024), _jpeg()
    results = {"pdf_bytes": len(pdf), "jpeg_bytes": len(jpeg)}
    with tempfile.TemporaryDirectory() as folder, app.app_context():
        saved = app.config.get("FILE_STORE_PATH"), app.extensions.pop("file_stores", None)
        app.config["FILE_STORE_PATH"] = folder
        pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
        lot_id = db.session.scalar(sa.select(Lot.id).join(Site, Site.id == Lot.site_id).where(Site.code == "MAIN")
                                   .order_by(Lot.id.desc()).limit(1))
        try:
            for name, data, filename in (("pdf", pdf, "coa.pdf"), ("jpeg", jpeg, "photo.jpg")):
                attach, read, plain = [], [], []
                for attempt in range(n + 1):
                    try:
                        with transaction():
                            started = time.perf_counter()
                            document = documents.attach(pharmacist, "lot", lot_id, data=data, filename=filename)
                            middle = time.perf_counter()
                            documents.read(pharmacist, document.id)
                            ended = time.perf_counter()
                            raise _RolledBack
                    except _RolledBack:
                        pass
                    # The same bytes as a plain file: written, synced, read back.
                    path = os.path.join(folder, f"plain-{attempt}")
                    began = time.perf_counter()
                    with open(path, "wb") as out:
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                    with open(path, "rb") as back:
                        back.read()
                    plain_ms = (time.perf_counter() - began) * 1000
                    if attempt:
                        attach.append((middle - started) * 1000)
                        read.append((ended - middle) * 1000)
                        plain.append(plain_ms)
                    for key in storage.store().root.rglob("*"):
                        if key.is_file():
                            key.unlink()
                a, r, p = percentiles(attach), percentiles(read), percentiles(plain)
                results[name] = {"attach": a, "read": r, "plain_file": p,
                                 "ratio": round((a["p50"] + r["p50"]) / max(p["p50"], 0.01), 2)}
        except Exception as exc:  # noqa: BLE001
            print(f"bench: documents failed: {exc!r}", file=sys.stderr)
            results["skipped"] = f"documents failed: {exc!r}"[:300]
        finally:
            app.config["FILE_STORE_PATH"] = saved[0]
            app.extensions.pop("file_stores", None)
            if saved[1] is not None:
                app.extensions["file_stores"] = saved[1]
            db.session.remove()
    return results
