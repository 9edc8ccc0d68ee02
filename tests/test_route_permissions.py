"""Every route, present and future, declares who may open it, and enforces it for every role.

Built from `app.url_map`: a new route is covered the moment it is registered.
"""

from urllib.parse import urlsplit

from testkit import placeholder_url, routes, sign_in_session

from compounding.permissions import PERMISSIONS, ROLES, role_can


def _expectation(permission: str | None, role: str | None) -> str:
    if permission is None:
        return "open"
    if role is None:
        return "sign in"
    if permission == "signed_in" or role_can(role, permission):
        return "allowed"
    return "forbidden"


def _check(response, expectation: str, is_api: bool) -> str | None:
    """None when the response matches the expectation, else what went wrong."""
    status = response.status_code
    # The sign-in gate sends visitors to /login?next=...; signing out lands on a bare /login.
    location = urlsplit(response.headers.get("Location", ""))
    to_login = status == 302 and location.path == "/login" and "next=" in location.query
    if status >= 500:
        return f"answered {status}"
    if expectation == "sign in":
        if is_api:
            body = response.get_json(silent=True) or {}
            if status != 401 or set(body) != {"error", "details"}:
                return f"answered {status} {body!r}, expected 401 JSON"
        elif not to_login:
            return f"answered {status}, expected a redirect to /login"
    elif expectation == "forbidden":
        if status != 403:
            return f"answered {status}, expected 403"
    elif status in (401, 403) or to_login:
        return f"answered {status} {response.headers.get('Location', '')}, expected to be let in"
    return None


def test_every_route_declares_its_permission(app):
    missing = [f"{rule.rule} ({rule.endpoint})" for rule, view in routes(app)
               if not hasattr(view, "required_permission")]
    assert not missing, ("routes without @requires / @public / @signed_in: " + ", ".join(missing))


def test_every_declared_permission_is_a_known_one(app):
    unknown = [f"{rule.endpoint}: {view.required_permission!r}" for rule, view in routes(app)
               if view.required_permission not in (None, "signed_in", *PERMISSIONS)]
    assert not unknown, unknown


def test_every_route_answers_every_role_as_the_permission_map_says(app, client, make_user):
    accounts = {None: None, **{role: make_user(role) for role in ROLES}}
    failures, checks = [], 0
    for rule, view in sorted(routes(app), key=lambda item: item[0].rule):
        permission = getattr(view, "required_permission", "missing")
        if permission == "missing":
            continue  # reported by test_every_route_declares_its_permission
        url = placeholder_url(rule)
        is_api = url.startswith("/api/")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for role, user in accounts.items():
                sign_in_session(client, user)
                expectation = _expectation(permission, role)
                try:
                    response = client.open(url, method=method, data={} if method != "GET" else None)
                except Exception as exc:  # noqa: BLE001  (report every route, not just the first)
                    failures.append(f"{method} {url} as {role or 'visitor'}: raised {exc!r}")
                    continue
                finally:
                    checks += 1
                problem = _check(response, expectation, is_api)
                if problem:
                    failures.append(f"{method} {url} [{permission}] as {role or 'visitor'}: {problem}")
    print(f"\n{checks} (route, method, role) checks")
    assert checks >= 6 * len(list(routes(app)))
    assert not failures, f"{len(failures)} of {checks} checks failed:\n" + "\n".join(failures)


# Every download has exactly the permission of the page that offers it.
EXPORT_PAGES = {
    "exports.audit": "exports.index",
    "exports.sessions": "exports.index",
    "exports.lots": "lots.lot_list",
    "exports.batches": "batches.batch_list",
    "exports.trace_lot": "recalls.trace_lot",
    "exports.trace_batch": "recalls.trace_batch",
    "exports.recall": "recalls.recall_detail",
    "exports.lot_import_template": "exports.lot_import",
    "cold_chain.report_xlsx": "cold_chain.report",
    "equipment.equipment_xlsx": "equipment.equipment_list",
    "people.team_xlsx": "people.team",
}


def _export_rules(app) -> dict:
    """Every route under /exports and every .xlsx download, by endpoint."""
    return {rule.endpoint: rule for rule, _ in routes(app)
            if rule.rule.startswith("/exports") or rule.rule.endswith(".xlsx")}


def test_every_export_route_is_mapped_to_the_page_that_offers_it(app):
    rules = _export_rules(app)
    downloads = {endpoint for endpoint, rule in rules.items() if rule.rule.endswith(".xlsx")}
    assert downloads == set(EXPORT_PAGES), "map each new .xlsx route to its page in EXPORT_PAGES"
    # The other /exports routes are pages themselves (the exports page, the import and its confirm step),
    # and the export jobs' pages: each person's own, whatever their role (the download checks the kind's permission).
    assert set(rules) - downloads <= {"exports.index", "exports.lot_import", "exports.lot_import_confirm",
                                      "exports.job_list", "exports.job_detail", "exports.job_download",
                                      "exports.job_again"}


def test_every_export_route_has_exactly_its_page_s_permission(app):
    views = app.view_functions
    different = {export: (views[export].required_permission, views[page].required_permission)
                 for export, page in EXPORT_PAGES.items()
                 if views[export].required_permission != views[page].required_permission}
    assert not different, different


def test_every_export_url_answers_every_role_as_its_page_does(app, client, make_user):
    rules = _export_rules(app)
    failures, checks = [], 0
    for role in ROLES:
        sign_in_session(client, make_user(role))
        for export, page in EXPORT_PAGES.items():
            expectation = _expectation(app.view_functions[page].required_permission, role)
            problem = _check(client.get(placeholder_url(rules[export])), expectation, False)
            checks += 1
            if problem:
                failures.append(f"{rules[export].rule} as {role} ({page} is {expectation}): {problem}")
    assert checks == len(ROLES) * len(EXPORT_PAGES)
    assert not failures, "\n".join(failures)
