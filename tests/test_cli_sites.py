"""The command line for a chain: create-site, create-location, and create-user --site."""

import sqlalchemy as sa
from testkit import PASSWORD, count_rows

from compounding.extensions import db
from compounding.models import AuditEvent, Location, Site, User
from compounding.services import sites


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output + (result.stderr or "")


def _counts():
    return count_rows(User), count_rows(Site), count_rows(Location), count_rows(AuditEvent)


def test_create_site_then_a_fridge_inside_its_main_store(runner):
    exit_code, output = _run(runner, "create-site", "LYON", "Lyon clinic", "--timezone", "Europe/Paris",
                             "--address", "1 rue de la Paix")
    assert exit_code == 0, output
    lyon = db.session.scalar(sa.select(Site).where(Site.code == "LYON"))
    store = sites.default_location(lyon.id)
    assert f"Created site LYON (Lyon clinic, Europe/Paris) with default location {store.code}." in output
    exit_code, output = _run(runner, "create-location", "LYON", "Fridge 1", "--kind", "fridge",
                             "--parent", store.code, "--min-celsius", "2", "--max-celsius", "8",
                             "--readings-per-day", "3")
    assert exit_code == 0, output
    fridge = db.session.scalar(sa.select(Location).where(Location.name == "Fridge 1"))
    assert (fridge.site_id, fridge.parent_id, fridge.min_celsius, fridge.readings_per_day) == (lyon.id, store.id, 2, 3)
    assert fridge.code in output


def test_create_site_refuses_a_duplicate_code_and_a_bad_zone_and_saves_nothing(runner):
    before = _counts()
    for args, message in ((["MAIN", "Again"], "Site MAIN exists already."),
                          (["LYON", "Lyon", "--timezone", "Europe/Lyon"], "is not a time zone")):
        exit_code, output = _run(runner, "create-site", *args)
        assert exit_code == 1 and message in output
    assert _counts() == before


def test_create_location_refuses_a_parent_at_another_site_and_an_unknown_site(runner):
    _run(runner, "create-site", "LYON", "Lyon")
    before = _counts()
    exit_code, output = _run(runner, "create-location", "MAIN", "Fridge", "--kind", "fridge",
                             "--parent", sites.default_location(sites.site_by_code("LYON").id).code)
    assert exit_code == 1 and "at another site" in output
    exit_code, output = _run(runner, "create-location", "PARIS", "Fridge", "--kind", "fridge")
    assert exit_code == 1 and "There is no site 'PARIS'" in output
    assert _counts() == before


def test_create_user_joins_the_sites_named_and_main_by_default(runner):
    _run(runner, "create-site", "LYON", "Lyon")
    _run(runner, "create-site", "MAD", "Madrid", "--timezone", "Europe/Madrid")
    exit_code, output = _run(runner, "create-user", "nina", "--role", "practitioner", "--password", PASSWORD,
                             "--site", "LYON", "--site", "mad")
    assert exit_code == 0, output
    assert "Created nina (practitioner). Sites: LYON, MAD." in output
    nina = db.session.scalar(sa.select(User).where(User.username == "nina"))
    assert sites.member_site_ids(nina) == [sites.site_by_code("LYON").id, sites.site_by_code("MAD").id]
    exit_code, output = _run(runner, "create-user", "omar", "--role", "technician", "--password", PASSWORD)
    assert exit_code == 0 and "Sites: MAIN." in output


def test_create_user_with_an_unknown_site_says_so_and_creates_nothing(runner):
    before = _counts()
    exit_code, output = _run(runner, "create-user", "nina", "--role", "practitioner", "--password", PASSWORD,
                             "--site", "ATLANTIS")
    assert exit_code == 1
    assert "There is no site 'ATLANTIS'" in output
    assert _counts() == before
