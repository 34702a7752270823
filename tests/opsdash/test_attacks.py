"""An attacker's tour of every URL (issue 8, "Hardening").

Every URL pattern of the URLconf is enumerated with ``get_resolver()``, so a new URL is attacked
automatically, and this file fails until that URL has an attack case (``CASES`` below). Each
pattern gets: path traversal in every path-like parameter (URL kwargs and the query parameters
it reads), a well-formed request from every role (anonymous, manager, auditor, operator,
superuser), and where it changes anything: GET (405) and a missing, wrong or cross-origin CSRF
token (403), the data root, the archive and the database compared before and after.

Around the tour: symlinks that lead out of the data root, HTML and script in every name and text
that reaches a page or an export, formulas in the CSV export, cookie flags and security headers,
login throttling, and inputs far too big (a 1 GB log, a 50 MB meta, 100,000 modules).

A random sentinel secret lives in files outside the data root and the archive, where a
traversal would land; no response body, header or zip member may ever contain it. Every request
is counted; the run ends with "attacks: N requests over M URL patterns, 0 got through"
(printed in the terminal summary and written to test-artifacts/attacks.txt).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import re
import secrets
import subprocess
import sys
import time
import tracemalloc
import urllib.parse
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.models import DBTaskResult

from eventstore import layout
from eventstore import log as logmod
from opsdash.actions import ACTIONS, BRANCH, MODULE
from opsdash.models import (
    ApiToken,
    AuditEntry,
    Backup,
    Incident,
    IncidentNote,
    Job,
    LoginFailure,
    MaintenanceWindow,
    ModuleState,
    Mute,
    ScanHost,
    Status,
)
from opsdash.services import tokens
from opsdash.services.access import limit_user
from opsdash.services.ingest import ingest
from opsdash.services.scan import record_pass, scan_root
from opsdash.services.worker import make_worker

from .conftest import PASSWORD

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SENTINEL = ("SENTINEL-" + secrets.token_hex(12)).encode()
HOST = "testhost"
LIVE_NAME = "events.meta.json.corrupted.1760000000000.bak"
ARCHIVED_NAME = "events.meta.json.corrupted.1750000000000.bak"
# Every module action of the registry: a new kind is attacked like the others without a line here.
KINDS = tuple(kind for kind, action in ACTIONS.items() if action.scope == MODULE)
BRANCH_KINDS = tuple(kind for kind, action in ACTIONS.items() if action.scope == BRANCH)

ANON, MANAGER, AUDITOR, OPERATOR, SUPER = "anonymous", "manager", "auditor", "operator", "superuser"
ROLES = (ANON, MANAGER, AUDITOR, OPERATOR, SUPER)


# -- the tally ------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    patterns: set[str] = field(default_factory=set)
    breaches: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"attacks: {self.requests} requests over {len(self.patterns)} URL patterns, {len(self.breaches)} got through"


TALLY = Tally()


class _Summary:
    """Prints the tally in pytest's terminal summary (registered once this module runs)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_line(TALLY.line())


@pytest.fixture(scope="module", autouse=True)
def _attack_summary(request):
    # Set up again whenever pytest-django moves this file's transactional tests to the end.
    if not request.config.pluginmanager.has_plugin("opsdash-attack-summary"):
        request.config.pluginmanager.register(_Summary(), "opsdash-attack-summary")
    yield
    ARTIFACTS.mkdir(exist_ok=True)
    details = "".join(f"  {b}\n" for b in TALLY.breaches)
    patterns = "".join(f"  {p}\n" for p in sorted(TALLY.patterns))
    (ARTIFACTS / "attacks.txt").write_text(f"{TALLY.line()}\n{details}URL patterns attacked:\n{patterns}")


def _breach(why: str) -> str:
    TALLY.breaches.append(why)
    return why


# -- every URL pattern ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    route: str  # the full route as the URLconf writes it
    name: str  # "opsdash:module_detail"; an unnamed pattern is named by its route
    params: tuple[str, ...]  # its URL kwargs, in order
    ints: frozenset[str]  # which of them only match digits

    def __str__(self) -> str:
        return self.name


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[Pattern]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = ":".join(x for x in (namespace, p.namespace or "") if x)
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            route = prefix + str(p.pattern)
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or route)
            converters = getattr(p.pattern, "converters", {})
            ints = frozenset(k for k, c in converters.items() if type(c).__name__ == "IntConverter")
            params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", str(p.pattern))) or tuple(p.pattern.regex.groupindex)
            yield Pattern(route, name, params, ints)


def all_patterns() -> list[Pattern]:
    return list(_walk(get_resolver().url_patterns))


def fill(route: str, values: dict[str, str]) -> str:
    """The URL path of ``route`` with each kwarg replaced by ``values[name]``, inserted as is
    (already percent-encoded where wanted). Regex routes (the admin's) lose ^ and $."""
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "\0" + m.group(1) + "\0", route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "\0" + m.group(1) + "\0", route)
    return "/" + re.sub(r"\0(\w+)\0", lambda m: values[m.group(1)], route)


# -- the world under attack ------------------------------------------------------------------


@dataclass
class World:
    root: Path
    archive: Path
    outside: Path
    users: dict[str, User]
    live: Backup
    archived: Backup
    job: Job
    kwargs: dict[str, dict[str, str]] = field(default_factory=dict)

    def client(self, role: str, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        if role != ANON:
            client.force_login(self.users[role])
        return client

    def files(self) -> dict[str, bytes]:
        """Every file under the data root, the archive and the outside, with its bytes."""
        return {
            str(p): p.read_bytes()
            for base in (self.root, self.archive, self.outside)
            if base.exists()
            for p in sorted(base.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }


def db_state() -> tuple:
    """What a refused request must leave as it was (a refusal adds its own audit entry: who tried)."""
    users = tuple(
        User.objects.order_by("pk").values_list("username", "password", "is_staff", "is_superuser", "is_active")
    )
    return (
        users,
        ApiToken.objects.filter(revoked_at__isnull=True).count(),
        Group.objects.count(),
        Job.objects.count(),
        DBTaskResult.objects.count(),
        AuditEntry.objects.exclude(outcome="refused").count(),
        Backup.objects.filter(state=Backup.State.LIVE).count(),
        ModuleState.objects.count(),
    )


def _outside(tmp_path: Path) -> Path:
    """Sentinel files where a traversal out of the data root or the archive would land."""
    outside = tmp_path / "outside"
    secret = {"secret": SENTINEL.decode()}
    for path in [
        tmp_path / "secret.txt",  # next to the data root: ../secret.txt
        outside / "secret.txt",
        tmp_path / "modules" / "pos" / "live" / layout.META_NAME,  # branch ".." from the root
        tmp_path / "modules" / "pos" / "live" / LIVE_NAME,
        tmp_path / "pos" / ARCHIVED_NAME,  # branch ".." from the archive
        tmp_path / "dar" / "pos" / LIVE_NAME,
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(secret))
    return outside


@pytest.fixture
def world(db, store, add_events, data_root, tmp_path, settings, demo_users) -> World:
    """dar/pos (a corrupt meta, a live and an archived backup, an old temp file), dar/kds
    (healthy), a finished job, an audit entry, one user per role and a superuser."""
    settings.OPSDASH_ARCHIVE_ROOT = archive = tmp_path / "archive"
    settings.OPSDASH_LOGIN_MAX_FAILURES = 10_000  # the tour posts wrong logins; throttling has its own test
    outside = _outside(tmp_path)
    pos = store.module("dar", "pos")
    add_events(pos, count=4)
    text = pos.meta_path.read_text()
    (pos.live_dir / LIVE_NAME).write_text(text + "\n}\n}")
    temp = pos.live_dir / layout.temp_name(1_700_000_000_000, "k3x9")
    temp.write_text(text[:20])
    os.utime(temp, (time.time() - 7200, time.time() - 7200))
    pos.meta_path.write_text(text + text[-30:])
    add_events(store.module("dar", "kds"))
    record_pass(scan_root())
    (archive / "dar" / "pos").mkdir(parents=True)
    (archive / "dar" / "pos" / ARCHIVED_NAME).write_bytes(b'{\n  "totalEvents": 1\n')
    state = ModuleState.objects.get(branch="dar", module="pos")
    now = timezone.now()
    archived = Backup.objects.create(
        module=state,
        name=ARCHIVED_NAME,
        kind="meta",
        size=21,
        sha256="0" * 64,
        created_at=now,
        state=Backup.State.ARCHIVED,
        first_seen=now,
        last_changed=now,
    )
    kds = ModuleState.objects.get(branch="dar", module="kds")
    job = Job.objects.create(
        kind="verify",
        host=HOST,
        branch="dar",
        module="kds",
        target=kds,
        requested_by="operator",
        status=Job.Status.SUCCEEDED,
        result={"status": "healthy"},
    )
    AuditEntry.objects.create(
        actor="operator", ip="127.0.0.1", action="verify", host=HOST, branch="dar", module="kds", outcome="ok"
    )
    users = {role: User.objects.get(username=role) for role in (MANAGER, AUDITOR, OPERATOR)}
    users[SUPER] = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    w = World(data_root, archive, outside, users, Backup.objects.get(name=LIVE_NAME), archived, job)
    root_token, _ = tokens.create(users[SUPER], "root-key")
    w.kwargs = {
        "module": {"host": HOST, "branch": "dar", "module": "pos"},
        "branch": {"host": HOST, "branch": "dar"},
        "backup": {"pk": str(w.live.pk)},
        "job": {"pk": str(job.pk)},
        "incident": {"pk": str(_an_incident(state).pk)},
        "mute": {"pk": str(_a_mute(state).pk)},
        "window": {"pk": str(_a_window("dar").pk)},
        "token": {"pk": str(root_token.pk)},
        "authenticator": {"pk": "4242"},
        "provider": {"provider_id": "sso"},
        "admin": {
            "object_id": str(AuditEntry.objects.get().pk),
            "id": str(users[MANAGER].pk),
            "app_label": "opsdash",
            "content_type_id": "1",
            "url": "nowhere/",
        },
        "none": {},
    }
    return w


def _an_incident(module_row: ModuleState) -> Incident:
    """The module's incident (a damaged module has one from its scan), or one made for the tour."""
    found = module_row.incidents.first()
    if found is not None:
        return found
    finding = {"code": "log_bad_line", "severity": "warning", "message": "m"}
    return Incident.open_for(module_row, timezone.now(), [finding], severity="warning")


def _a_mute(module_row: ModuleState) -> Mute:
    return Mute.objects.create(
        kind="ack", scope="module", host=module_row.host, branch=module_row.branch, module=module_row,
        comment="known", created_by="operator", created_at=timezone.now(), status_at=module_row.status,
    )  # fmt: skip


def _a_window(branch: str) -> MaintenanceWindow:
    return MaintenanceWindow.objects.create(
        host=HOST, branch=branch, cron="0 3 * * *", minutes=30, comment="nightly", created_by="operator"
    )


# -- requests ----------------------------------------------------------------------------------

HTML_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _body(response) -> bytes:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if response.get("Content-Type", "").startswith("application/zip") and body:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:  # deflated members hide their bytes
            body += b"".join(zf.read(n) for n in zf.namelist())
    return body


def hit(client: Client, method: str, path: str, pattern: Pattern | str, *, forbid: tuple[str, ...] = (), **kwargs: Any):
    """One attack request: counted, read to the end, and checked for what must never happen
    (the sentinel, a server error, an HTML page without its security headers, and any of
    ``forbid`` appearing raw in an HTML page). Returns (response, body)."""
    TALLY.requests += 1
    TALLY.patterns.add(str(pattern))
    response = getattr(client, method)(path, **kwargs)
    body = _body(response)
    where = f"{method.upper()} {path[:160]} -> {response.status_code} ({pattern})"
    headers = "\n".join(f"{k}: {v}" for k, v in response.items()).encode()
    assert SENTINEL not in body and SENTINEL not in headers, _breach(f"sentinel leaked: {where}")
    assert response.status_code < 500 or (str(pattern) == "opsdash:healthz" and response.status_code == 503), _breach(
        f"server error: {where}"
    )
    assert response.get("X-Content-Type-Options") == "nosniff", _breach(f"no nosniff: {where}")
    if response.get("Content-Type", "").startswith("text/html") and response.status_code != 400 and body:
        for name, value in HTML_HEADERS.items():
            assert response.get(name) == value, _breach(f"{name} missing: {where}")
        csp = response.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, _breach(
            f"CSP: {where}"
        )
        text = body.decode("utf-8", "replace")
        for raw in forbid:
            assert raw not in text, _breach(f"unescaped {raw!r}: {where}")
    return response, body


# -- the attack cases ----------------------------------------------------------------------------

PAGE = {ANON: {302}, MANAGER: {200}, AUDITOR: {200}, OPERATOR: {200}, SUPER: {200}}
API = {ANON: {401}, MANAGER: {200}, AUDITOR: {200}, OPERATOR: {200}, SUPER: {200}}
AUDIT_PAGE = {ANON: {302}, MANAGER: {403}, AUDITOR: {200}, OPERATOR: {403}, SUPER: {200}}
AUDIT_API = {ANON: {401}, MANAGER: {403}, AUDITOR: {200}, OPERATOR: {403}, SUPER: {200}}
DOWNLOAD = {ANON: {302}, MANAGER: {403}, AUDITOR: {200}, OPERATOR: {200}, SUPER: {200}}
ACTION = {ANON: {302}, MANAGER: {403}, AUDITOR: {403}, OPERATOR: {302}, SUPER: {302}}
API_ACTION = {ANON: {401}, MANAGER: {403}, AUDITOR: {403}, OPERATOR: {202}, SUPER: {202, 409}}
PUBLIC = {role: {200} for role in ROLES}
# A page of one's own account: the login first; then the page, or a redirect (to confirm the
# password again, or to the second factor's index when there is nothing to show), or 404 (no such key).
ACCOUNT_PAGE = {
    ANON: {302},
    MANAGER: {200, 302, 404},
    AUDITOR: {200, 302, 404},
    OPERATOR: {200, 302, 404},
    SUPER: {200, 302, 404},
}
NOT_CONFIGURED = {role: {404} for role in ROLES}  # single sign-on while no provider is configured
LOGIN_PAGE = {
    ANON: {200},
    MANAGER: {302},
    AUDITOR: {302},
    OPERATOR: {302},
    SUPER: {302},
}  # logged in: on to the dashboard
TOKEN_REVOKE = {ANON: {302}, MANAGER: {404}, AUDITOR: {404}, OPERATOR: {404}, SUPER: {302}}  # one's own tokens only
REDIRECT = {role: {302} for role in ROLES}
ADMIN = {ANON: {302}, MANAGER: {302}, AUDITOR: {302}, OPERATOR: {302}, SUPER: {200, 302, 404, 405}}

MODULE_QUERY = ("status", "branch", "q", "unverified", "sort", "page")
INCIDENT_QUERY = ("since", "until", "branch", "code", "state", "page")
BACKUP_QUERY = ("branch", "kind", "state", "q", "page")
AUDIT_QUERY = ("since", "until", "actor", "action", "branch", "outcome", "page")
EVENT_QUERY = (
    "day",
    "table",
    "action",
    "record",
    "event",
    "sequence",
    "since",
    "until",
    "q",
    "cursor",
    "dir",
    "at",
    "goto_line",
    "goto_sequence",
    "goto_time",
)
NOTE = {ANON: {302}, MANAGER: {403}, AUDITOR: {302}, OPERATOR: {302}, SUPER: {302}}
OPERATORS = frozenset({OPERATOR, SUPER})


@dataclass(frozen=True)
class Case:
    method: str  # of a well-formed request
    expect: dict[str, set[int]]  # its status for each role
    kwargs: str = "none"  # which of World.kwargs fills the URL
    query: tuple[str, ...] = ()  # the query parameters the view reads
    data: dict[str, str] = field(default_factory=dict)
    mutating: bool = False  # changes files, jobs, users or the session: GET and CSRF attacks too
    allowed: frozenset[str] = frozenset(ROLES)  # the roles whose well-formed POST may change something


CASES: dict[str, Case] = {
    "opsdash:module_list": Case("get", PAGE, query=MODULE_QUERY),
    "opsdash:module_detail": Case("get", PAGE, "module", query=("job", "backups", "incidents")),
    "opsdash:incident_list": Case("get", PAGE, query=INCIDENT_QUERY),
    "opsdash:backup_list": Case("get", PAGE, query=BACKUP_QUERY),
    "opsdash:backup_detail": Case("get", PAGE, "backup"),
    "opsdash:backup_download": Case("get", DOWNLOAD, "backup"),
    "opsdash:module_backups_download": Case("get", DOWNLOAD, "module"),
    "opsdash:branch_backups_download": Case("get", DOWNLOAD, "branch"),
    "opsdash:audit_list": Case("get", AUDIT_PAGE, query=AUDIT_QUERY),
    "opsdash:api_audit_list": Case("get", AUDIT_API, query=("format", *AUDIT_QUERY)),
    "opsdash:api_module_list": Case("get", API, query=MODULE_QUERY),
    "opsdash:api_module_detail": Case("get", API, "module"),
    "opsdash:module_events": Case("get", PAGE, "module", query=EVENT_QUERY),
    "opsdash:module_events_export": Case("get", PAGE, "module", query=("format", *EVENT_QUERY)),
    "opsdash:api_module_events": Case("get", API, "module", query=EVENT_QUERY),
    "opsdash:incident_detail": Case("get", PAGE, "incident"),
    "opsdash:module_mute": Case(
        "post",
        ACTION,
        "module",
        data={"kind": "ack", "scope": "module", "comment": "known"},
        mutating=True,
        allowed=OPERATORS,
    ),
    "opsdash:mute_lift": Case("post", ACTION, "mute", mutating=True, allowed=OPERATORS),
    "opsdash:maintenance_list": Case("get", PAGE),
    "opsdash:backup_pin": Case("post", ACTION, "backup", mutating=True, allowed=OPERATORS),
    "opsdash:maintenance_create": Case(
        "post",
        ACTION,
        data={"cron": "0 3 * * *", "minutes": "30", "comment": "nightly"},
        mutating=True,
        allowed=OPERATORS,
    ),
    "opsdash:maintenance_cancel": Case("post", ACTION, "window", mutating=True, allowed=OPERATORS),
    "opsdash:incident_note": Case(
        "post", NOTE, "incident", data={"text": "seen"}, mutating=True, allowed=frozenset({AUDITOR, OPERATOR, SUPER})
    ),
    **{f"opsdash:module_{kind}": Case("post", ACTION, "module", mutating=True, allowed=OPERATORS) for kind in KINDS},
    **{
        f"opsdash:branch_{kind}": Case(
            "post", ACTION, "branch", data={"confirm": "dar"}, mutating=True, allowed=OPERATORS
        )
        for kind in BRANCH_KINDS
    },
    "opsdash:job_detail": Case("get", PAGE, "job"),
    **{
        f"opsdash:api_module_{kind}": Case("post", API_ACTION, "module", mutating=True, allowed=OPERATORS)
        for kind in KINDS
    },
    "opsdash:api_job_detail": Case("get", API, "job"),
    "opsdash:token_list": Case("get", PAGE),
    "opsdash:token_revoke": Case("post", TOKEN_REVOKE, "token", mutating=True, allowed=frozenset({SUPER})),
    "opsdash:healthz": Case("get", PUBLIC),
    "opsdash:metrics": Case("get", PUBLIC),
    "login": Case("get", LOGIN_PAGE, query=("next",)),
    "logout": Case("post", REDIRECT, mutating=True, allowed=frozenset(ROLES) - {ANON}),
    # django-allauth: the names it reverses for our login and logout, its second factor's pages, single sign-on
    "account_login": Case("get", LOGIN_PAGE, query=("next",)),
    "account_logout": Case("post", REDIRECT, mutating=True, allowed=frozenset(ROLES) - {ANON}),
    "account_inactive": Case("get", PUBLIC),
    "account_reauthenticate": Case("get", ACCOUNT_PAGE),
    "mfa_authenticate": Case("get", REDIRECT),  # no login half done: back to the login
    "mfa_index": Case("get", PAGE),
    "mfa_reauthenticate": Case("get", ACCOUNT_PAGE),
    "mfa_activate_totp": Case("get", ACCOUNT_PAGE),
    "mfa_deactivate_totp": Case("get", ACCOUNT_PAGE),
    "mfa_view_recovery_codes": Case("get", ACCOUNT_PAGE),
    "mfa_generate_recovery_codes": Case("get", ACCOUNT_PAGE),
    "mfa_download_recovery_codes": Case("get", ACCOUNT_PAGE),
    "mfa_list_webauthn": Case("get", ACCOUNT_PAGE),
    "mfa_add_webauthn": Case("get", ACCOUNT_PAGE),
    "mfa_reauthenticate_webauthn": Case("get", ACCOUNT_PAGE),
    "mfa_remove_webauthn": Case("get", ACCOUNT_PAGE, "authenticator"),
    "mfa_edit_webauthn": Case("get", ACCOUNT_PAGE, "authenticator"),
    "openid_connect_login": Case("get", NOT_CONFIGURED, "provider"),
    "openid_connect_callback": Case("get", NOT_CONFIGURED, "provider"),
    "socialaccount_login_cancelled": Case("get", PUBLIC),
    "socialaccount_login_error": Case(
        "get", {ANON: {302}} | {role: {401} for role in ROLES if role != ANON}
    ),  # allauth's page says why, as a 401
    "socialaccount_signup": Case("get", REDIRECT),  # no sign-up half done: back to the login
    "socialaccount_connections": Case("get", PAGE),
    "set_language": Case("post", REDIRECT, query=("next",), data={"language": "en", "next": "/"}, mutating=True),
}
ADMIN_MUTATING = re.compile(r"_(add|change|delete)$|password_change$")


def case_for(p: Pattern) -> Case | None:
    """The attack case of a pattern. The admin's many patterns share one (they are generated per
    registered model, so a new model is covered); every other URL needs its own entry."""
    if p.name in CASES:
        return CASES[p.name]
    if p.route.startswith("admin/"):
        return Case("get", ADMIN, "admin", mutating=bool(ADMIN_MUTATING.search(p.name)) or p.name == "admin:logout")
    return None


PATTERNS = all_patterns()

# Path-like payloads, as an attacker types them into a URL (the server percent-decodes once).
PATH_PAYLOADS = [
    "..",
    ".",
    "...",
    "..%2F..%2Fsecret.txt",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Fsecret.txt",
    "%252e%252e",
    "%252e%252e%252fsecret.txt",
    "..%5C..%5Csecret.txt",
    "..%00",
    "%00",
    "dar%00.bak",
    "%2Fetc%2Fpasswd",
    "a" * 300,
    ".hidden",
    "~root",
    quote("\u2024\u2024", safe=""),  # one dot leaders
    quote("\uff0e\uff0e", safe=""),  # fullwidth full stops
    quote("\u2215etc\u2215passwd", safe=""),  # division slashes
    "%c0%ae%c0%ae%c0%af",  # overlong UTF-8 dots and slash
    "%0d%0aSet-Cookie:%20pwned=1",
]
INT_PAYLOADS = [
    "..",
    "-1",
    "0",
    "99999999999999999999999",
    "1%2F..%2F..",
    "1.0",
    "1e3",
    quote("\u0661", safe=""),
    "%00",
]
# Query-string payloads, as decoded values.
QUERY_PAYLOADS = [
    "..",
    "../../secret.txt",
    "..%2f..%2fsecret.txt",
    "%252e%252e%252f",
    "\\..\\..\\secret.txt",
    "a" * 300,
    "\u2024\u2024/secret.txt",
    "\uff0e\uff0e\uff0fsecret.txt",
    "-1",
    "99999999999999999999999",
    "' OR 1=1 --",
    '"><script>alert(41)</script>',
    # edge dates and digits for every date and number parameter: the first and last days Python
    # knows (OverflowError one day further), a day that does not exist, digits isdigit() takes
    # and int() does not (or does: Arabic-Indic and fullwidth), a float beyond any integer
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "0000-00-00",
    "\u00b2",
    "\u0661\u0662",
    "\uff11\uff12",
    "1e9999",
    "9" * 40,
]
QUERY_FORBID = ('"><script>alert(41)</script>', "<script>alert(41)")


def _payloads(world: World) -> list[str]:
    return [*PATH_PAYLOADS, quote(str(world.outside / "secret.txt"), safe="")]  # an absolute path too


def test_every_url_pattern_has_an_attack_case():
    missing = [f"{p.route} ({p.name})" for p in PATTERNS if case_for(p) is None]
    assert not missing, "URL patterns without an attack case in tests/opsdash/test_attacks.py: " + ", ".join(missing)
    stale = set(CASES) - {p.name for p in PATTERNS}
    assert not stale, f"attack cases for URL names that no longer exist: {stale}"


def _opsdash_patterns() -> list[Pattern]:
    return [p for p in PATTERNS if not p.route.startswith("admin/")]


@pytest.mark.parametrize("pattern", _opsdash_patterns(), ids=str)
def test_the_tour(world, pattern: Pattern):
    """One URL pattern: traversal in every kwarg and query parameter, then every role."""
    case = case_for(pattern)
    assert case is not None, f"{pattern.route} has no attack case"
    valid = world.kwargs[case.kwargs]
    superuser = world.client(SUPER)
    operator = world.client(OPERATOR)
    before = world.files()

    # 1. path traversal in every URL kwarg, by the roles that pass every permission check
    for param in pattern.params:
        payloads = INT_PAYLOADS if param in pattern.ints else _payloads(world)
        for i, payload in enumerate(payloads):
            path = fill(pattern.route, {**{k: quote(v, safe="") for k, v in valid.items()}, param: payload})
            for client in (
                (superuser, operator) if i < 4 else (superuser,)
            ):  # the superuser passes every permission check
                response, _ = hit(client, case.method, path, pattern, data=case.data)
                assert response.status_code in (400, 404, 405), _breach(f"{path} -> {response.status_code}")

    url = fill(pattern.route, {k: quote(v, safe="") for k, v in valid.items()})
    # 2. the query parameters it reads, each carrying each payload; and a few it does not read
    if case.method == "get":
        for payload in [*QUERY_PAYLOADS, str(world.outside / "secret.txt")]:
            params = dict.fromkeys(case.query, payload) | {"file": payload, "path": payload}
            response, _ = hit(superuser, "get", url, pattern, data=params, forbid=QUERY_FORBID)
            assert response.status_code in {200, 302, 400, 404} | case.expect[SUPER], _breach(
                f"{url}?{payload} -> {response.status_code}"
            )
        response, _ = hit(superuser, "get", url, pattern, data=dict.fromkeys(case.query or ("q",), "a\x00b"))
        assert response.status_code == 400, _breach(f"NUL in the query of {url} -> {response.status_code}")

    # 3. a NUL byte in a form field (url-encoded and multipart; PostgreSQL refuses NUL in text),
    #    and a Host header that is not ours (absolute URLs are built from it)
    if case.method == "post":
        for field in [*case.data, "username"]:
            response, _ = hit(superuser, "post", url, pattern, data={**case.data, field: "a\x00b"})
            assert response.status_code == 400, _breach(f"NUL in a multipart form to {url} -> {response.status_code}")
            response, _ = hit(
                superuser, "post", url, pattern, data=f"{field}=a%00b", content_type="application/x-www-form-urlencoded"
            )
            assert response.status_code == 400, _breach(f"NUL in a url-encoded form to {url} -> {response.status_code}")
    response, _ = hit(superuser, case.method, url, pattern, data=case.data, HTTP_HOST="evil.example.com")
    assert response.status_code == 400, _breach(f"a foreign Host header on {url} -> {response.status_code}")

    # 4. a well-formed request from every role; the refused ones first, and they change nothing
    for role in sorted(ROLES, key=lambda r: r in case.allowed):
        state = db_state()
        response, _ = hit(world.client(role), case.method, url, pattern, data=case.data)
        assert response.status_code in case.expect[role], _breach(
            f"{role} {case.method.upper()} {url} -> {response.status_code}"
        )
        if case.mutating and role not in case.allowed:
            assert db_state() == state, _breach(f"{role} changed the database through {url}")
        if role == ANON and case.expect[ANON] == {302} and pattern.name not in ("set_language", "logout"):
            assert response["Location"].startswith("/accounts/login/")
    assert world.files() == before  # the requests only queue jobs; no file changed


# -- the admin ----------------------------------------------------------------------------------


def test_the_admin_tour(world):
    """Every admin pattern: non-staff roles are sent to the admin login, object ids carrying
    payloads answer 404 (or a redirect), and the append-only audit trail stays read-only."""
    admin_patterns = [p for p in PATTERNS if p.route.startswith("admin/")]
    assert admin_patterns
    clients = {role: world.client(role) for role in ROLES}
    entry = AuditEntry.objects.get()
    for p in admin_patterns:
        case = case_for(p)
        url = fill(p.route, world.kwargs["admin"])
        for role in ROLES:
            response, _ = hit(clients[role], "get", url, p)
            if p.name == "admin:login":
                assert response.status_code in (200, 302)
            elif role == SUPER:
                assert response.status_code in case.expect[SUPER] | {403}, _breach(
                    f"superuser GET {url} -> {response.status_code}"
                )
            else:
                login_or_index = "/login/" in response["Location"] or (
                    p.name == "admin:logout" and response["Location"] == "/admin/"
                )
                assert response.status_code == 302 and login_or_index, _breach(
                    f"{role} GET {url} -> {response.status_code}"
                )
        for param in p.params:
            for payload in (
                "..",
                "..%2F..%2Fsecret.txt",
                "%2e%2e",
                "a" * 300,
                quote(str(world.outside / "secret.txt"), safe=""),
                "1%00",
            ):
                path = fill(p.route, {**world.kwargs["admin"], param: payload})
                response, _ = hit(clients[SUPER], "get", path, p)
                assert response.status_code in (302, 400, 403, 404), _breach(
                    f"superuser GET {path} -> {response.status_code}"
                )
        if case.mutating:
            state = db_state()
            for role in (ANON, MANAGER, AUDITOR, OPERATOR):
                response, _ = hit(clients[role], "post", url, p, data={"post": "yes", "actor": "forged"})
                assert response.status_code in (302, 405), _breach(f"{role} POST {url} -> {response.status_code}")
            response, _ = hit(world.client(SUPER, csrf=True), "post", url, p, data={"post": "yes"})
            assert response.status_code == 403, _breach(f"superuser POST without CSRF {url} -> {response.status_code}")
            assert db_state() == state
            if "auditentry" in p.name:  # read-only even for a superuser with a valid token
                response, _ = hit(
                    clients[SUPER], "post", url, p, data={"post": "yes", "actor": "forged", "outcome": "ok"}
                )
                assert response.status_code == 403, _breach(f"superuser POST {url} -> {response.status_code}")
                assert db_state() == state and AuditEntry.objects.get(pk=entry.pk).actor == entry.actor


# -- GET on POST-only URLs, CSRF, every role ------------------------------------------------------


def _csrf_token(client: Client) -> str:
    """A cookie and a matching token, as a page with a form would hand out (double submit)."""
    token = get_random_string(32)
    client.cookies["csrftoken"] = token
    return token


def test_every_mutating_endpoint_refuses_get_and_forged_or_missing_csrf_for_every_role(world):
    """GET is 405 (or the login redirect for anonymous visitors: refused before the view) and a
    POST without a token, with a wrong one, or from another origin is 403 — for every role,
    superuser included; the data root, the archive, the outside and the database unchanged."""
    mutating = [p for p in _opsdash_patterns() if case_for(p).mutating]
    assert len(mutating) >= 12
    files, state = world.files(), db_state()
    for p in mutating:
        case = case_for(p)
        url = fill(p.route, {k: quote(v, safe="") for k, v in world.kwargs[case.kwargs].items()})
        for role in ROLES:
            plain = world.client(role)
            response, _ = hit(plain, "get", url, p, data=case.data)
            if p.name == "set_language":  # Django's view answers GET but changes nothing
                assert "django_language" not in response.cookies
            elif (
                role == ANON and ":api_" not in p.name and response.status_code != 405
            ):  # 405: refused by the view itself
                assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
            else:
                assert response.status_code == 405, _breach(f"{role} GET {url} -> {response.status_code}")
            client = world.client(role, csrf=True)
            token = _csrf_token(client)
            forged = "x" * 32
            attempts = [
                {"data": case.data},  # no token at all
                {"data": {**case.data, "csrfmiddlewaretoken": forged}},
                {"data": case.data, "headers": {"X-CSRFToken": forged}},
                {
                    "data": {**case.data, "csrfmiddlewaretoken": token},
                    "headers": {"Origin": "https://evil.example.com"},
                },
                {"data": {**case.data, "csrfmiddlewaretoken": token}, "headers": {"Origin": "null"}},
            ]
            for attempt in attempts:
                response, _ = hit(client, "post", url, p, **attempt)
                assert response.status_code == 403, _breach(
                    f"{role} forged POST {url} {attempt} -> {response.status_code}"
                )
            assert "_auth_user_id" in client.session or role == ANON  # still logged in: the forged logout did nothing
    assert world.files() == files and db_state() == state


@pytest.mark.django_db(transaction=True)
def test_the_audit_trail_cannot_be_spoofed(world, settings):
    """Who and from where come from the session and the socket, never from what the client sends."""
    spoof = {
        "HTTP_X_FORWARDED_FOR": "203.0.113.9",
        "HTTP_X_REAL_IP": "203.0.113.9",
        "HTTP_FORWARDED": "for=203.0.113.9",
        "HTTP_REMOTE_USER": "root",
        "HTTP_X_REMOTE_USER": "root",
        "HTTP_X_USER": "root",
    }
    forged = {"actor": "root", "user": "root", "requested_by": "root", "ip": "203.0.113.9", "username": "root"}
    operator, auditor = world.client(OPERATOR), world.client(AUDITOR)
    response, _ = hit(
        operator,
        "post",
        reverse("opsdash:module_verify", args=[HOST, "dar", "pos"]),
        "opsdash:module_verify",
        data=forged,
        **spoof,
    )
    assert response.status_code == 302
    job = Job.objects.get(module="pos")
    assert (job.requested_by, job.requested_from) == ("operator", "127.0.0.1")
    make_worker(HOST, batch=True).run()
    hit(auditor, "get", world.live.download_url(), "opsdash:backup_download", data=forged, **spoof)
    response, _ = hit(
        auditor,
        "get",
        reverse("opsdash:module_backups_download", args=[HOST, "dar", "pos"]),
        "opsdash:module_backups_download",
        **spoof,
    )
    entries = list(AuditEntry.objects.exclude(pk=AuditEntry.objects.order_by("pk").first().pk).order_by("pk"))
    assert [(e.actor, e.ip) for e in entries] == [
        ("operator", "127.0.0.1"),
        ("auditor", "127.0.0.1"),
        ("auditor", "127.0.0.1"),
    ]
    assert all(
        "root" not in orjson.dumps(e.params).decode() and "203.0.113.9" not in orjson.dumps(e.params).decode()
        for e in entries
    )
    # the trail itself is append-only through every door: the ORM, the queryset, the admin (above)
    entry = entries[0]
    entry.actor = "root"
    with pytest.raises(Exception, match="cannot be changed"):
        entry.save()
    with pytest.raises(Exception, match="cannot be changed"):
        AuditEntry.objects.update(actor="root")
    with pytest.raises(Exception, match="cannot be deleted"):
        AuditEntry.objects.all().delete()


# -- symlinks out of the data root ------------------------------------------------------------------


def _secret_module(base: Path) -> Path:
    """A module folder full of sentinel bytes (a meta, a log, a backup), outside the root."""
    live = base / "modules" / "pos" / "live"
    live.mkdir(parents=True)
    secret = SENTINEL.decode()
    (live / layout.META_NAME).write_text('{\n  "totalEvents": 1,\n  "secret": "%s"\n}\n' % secret)
    (live / layout.LOG_NAME).write_text(
        '{"id": "evt-1", "sequence": 1, "table": "t", "record": {"id": "%s"}}\n' % secret
    )
    (live / LIVE_NAME).write_text('{"secret": "%s"}' % secret)
    (live / layout.temp_name(1_600_000_000_000, "old")).write_text(secret)
    os.utime(live / layout.temp_name(1_600_000_000_000, "old"), (1_600_000_000, 1_600_000_000))
    return live


@pytest.mark.django_db(transaction=True)
def test_symlinks_out_of_the_data_root_are_reported_and_never_followed(world, store, add_events):
    """A branch folder, a module folder, a live folder, a backup, an events.log and a meta that
    are symlinks leading outside: each module is critical with an ``unreadable`` finding that
    says so, no page, download, zip or API answer shows a byte from outside, and no action
    (rebuild, archive, clean temp, verify, both bulk actions) writes or removes anything there."""
    root, outside = world.root, world.outside
    away = outside / "away"
    _secret_module(away)
    (root / "linkbranch").symlink_to(away)  # <root>/linkbranch -> outside
    (root / "dar" / "modules" / "linkmod").symlink_to(away / "modules" / "pos")
    (root / "dar" / "modules" / "linklive").mkdir()
    (root / "dar" / "modules" / "linklive" / "live").symlink_to(away / "modules" / "pos" / "live")
    for name in ("logmod", "metamod", "bakmod", "swapmod"):
        add_events(store.module("dar", name))
    secret_file = outside / "secret.json"
    secret_file.write_text('{"secret": "%s"}' % SENTINEL.decode())
    logmod_live = root / "dar" / "modules" / "logmod" / "live"
    (logmod_live / layout.LOG_NAME).unlink()
    (logmod_live / layout.LOG_NAME).symlink_to(secret_file)
    metamod_live = root / "dar" / "modules" / "metamod" / "live"
    (metamod_live / layout.META_NAME).unlink()
    (metamod_live / layout.META_NAME).symlink_to(secret_file)
    bak_live = root / "dar" / "modules" / "bakmod" / "live"
    (bak_live / LIVE_NAME).write_text('{"harmless": true}')
    swap = root / "dar" / "modules" / "swapmod"
    (swap / "live" / LIVE_NAME).write_text('{"harmless": true}')
    scan_root()
    bak_row = Backup.objects.get(module__module="bakmod")
    swap_row = Backup.objects.get(module__module="swapmod")
    # after the scan recorded them, a backup and a whole module folder become symlinks to outside
    (bak_live / LIVE_NAME).unlink()
    (bak_live / LIVE_NAME).symlink_to(secret_file)
    os.rename(swap, root.parent / "swapmod-real")
    swap.symlink_to(away / "modules" / "pos")
    outside_before = {str(p): p.read_bytes() for p in sorted(outside.rglob("*")) if p.is_file()}

    auditor, operator = world.client(AUDITOR), world.client(OPERATOR)
    for row in (bak_row, swap_row):  # the rows still say "live": the reads themselves refuse
        response, _ = hit(auditor, "get", row.download_url(), "opsdash:backup_download")
        assert response.status_code == 404
        response, body = hit(auditor, "get", row.get_absolute_url(), "opsdash:backup_detail")
        assert response.status_code == 200 and b"harmless" not in body
    scan_root()
    linked = {
        ("linkbranch", "pos"): "linkbranch/modules/pos/live",
        ("dar", "linkmod"): "dar/modules/linkmod/live",
        ("dar", "linklive"): "dar/modules/linklive/live",
        ("dar", "swapmod"): "dar/modules/swapmod/live",
        ("dar", "logmod"): "events.log",
        ("dar", "metamod"): "events.meta.json",
        ("dar", "bakmod"): LIVE_NAME,
    }
    for (branch, module), file in linked.items():
        state = ModuleState.objects.get(branch=branch, module=module)
        unreadable = [f for f in state.findings if f["code"] == "unreadable"]
        assert state.status == Status.CRITICAL and unreadable, (branch, module, state.findings)
        assert "symlink" in unreadable[0]["message"] and unreadable[0]["file"].endswith(file)
        page = state.get_absolute_url()
        response, body = hit(operator, "get", page, "opsdash:module_detail")
        html = body.decode()
        assert response.status_code == 200 and "unreadable" in html and "symlink" in html and "not followed" in html
        for url, name in [
            (state.api_url(), "opsdash:api_module_detail"),
            (
                reverse("opsdash:module_backups_download", args=[HOST, branch, module]),
                "opsdash:module_backups_download",
            ),
            (reverse("opsdash:branch_backups_download", args=[HOST, branch]), "opsdash:branch_backups_download"),
        ]:
            response, _ = hit(auditor, "get", url, name)
            assert response.status_code == 200
    assert not Backup.objects.filter(module__module__in=["linkmod", "linklive"], module__branch="dar").exists()
    assert not Backup.objects.filter(module__branch="linkbranch").exists()
    assert set(Backup.objects.filter(module__module__in=["bakmod", "swapmod"]).values_list("state", flat=True)) == {
        Backup.State.MISSING
    }
    for row in (bak_row, swap_row):
        row.refresh_from_db()
        assert hit(auditor, "get", row.download_url(), "opsdash:backup_download")[0].status_code == 404
    for response_page in (
        "opsdash:module_list",
        "opsdash:backup_list",
        "opsdash:incident_list",
        "opsdash:api_module_list",
    ):
        hit(operator, "get", reverse(response_page), response_page)

    # every action on every linked module, and both bulk actions on the branch, run to the end
    for branch, module in linked:
        for kind in KINDS:
            Job.objects.filter(status__in=Job.ACTIVE).delete()
            hit(
                operator,
                "post",
                reverse(f"opsdash:module_{kind}", args=[HOST, branch, module]),
                f"opsdash:module_{kind}",
            )
            make_worker(HOST, batch=True).run()
    for name in (f"opsdash:branch_{kind}" for kind in BRANCH_KINDS):
        for branch in ("dar", "linkbranch"):
            hit(operator, "post", reverse(name, args=[HOST, branch]), name, data={"confirm": branch})
            make_worker(HOST, batch=True).run()
    failed = Job.objects.filter(status=Job.Status.FAILED, kind="rebuild").values_list("module", "error")
    assert {m for m, _ in failed} >= {"linkmod", "linklive", "swapmod"}
    assert all(
        "outside the data root" in e or "symlink" in e for m, e in failed if m in ("linkmod", "linklive", "swapmod")
    )
    assert {str(p): p.read_bytes() for p in sorted(outside.rglob("*")) if p.is_file()} == outside_before
    archived = b"".join(p.read_bytes() for p in world.archive.rglob("*") if p.is_file())
    assert SENTINEL not in archived


def test_a_symlink_inside_the_archive_is_not_followed(world, settings):
    """The archive is ours, but a symlinked module folder there must not serve outside bytes."""
    (world.archive / "dar" / "pos" / ARCHIVED_NAME).unlink()
    (world.archive / "dar" / "pos").rmdir()
    (world.archive / "dar" / "pos").symlink_to(world.outside.parent / "pos")  # holds a sentinel ARCHIVED_NAME
    response, _ = hit(world.client(OPERATOR), "get", world.archived.download_url(), "opsdash:backup_download")
    assert response.status_code == 404
    for extra in ({}, {"headers": {"HX-Request": "true"}}):  # its preview (hit() checks for the sentinel)
        response, _ = hit(
            world.client(AUDITOR), "get", world.archived.get_absolute_url(), "opsdash:backup_detail", **extra
        )
        assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_nul_characters_in_the_files_never_fail_a_scan_a_job_or_an_ingest(world, store, add_events):
    """A crash's NUL bytes in a log, a NUL in an event id and in the meta, a NUL in the server's
    log: PostgreSQL stores no NUL in text or jsonb, so each is replaced by U+FFFD where it is saved
    (it failed the whole scan pass, every module of the host, on PostgreSQL)."""
    module = store.module("dar", "nul")
    add_events(module, count=2)
    module.append_event({"id": "evt-\x00nul", "table": "t\x00", "record": {"id": "r\x00"}})
    with open(module.log_path, "ab") as fh:
        fh.write(b"\x00" * 4096 + b"\n")
    module.update_meta({"lastAckId": "ack\x00", "x\x00": "\x00"})
    report = scan_root()
    state = ModuleState.objects.get(module="nul")
    assert "log_bad_line" in state.codes and "\ufffd" in orjson.dumps(state.findings).decode()
    assert scan_root().changed == 0  # the stored state compares equal on the next pass
    operator = world.client(OPERATOR)
    for kind in ("verify", "rebuild"):
        hit(operator, "post", reverse(f"opsdash:module_{kind}", kwargs=state.key), f"opsdash:module_{kind}")
        make_worker(HOST, batch=True).run()
    assert list(Job.objects.filter(module="nul").values_list("status", flat=True)) == [Job.Status.SUCCEEDED] * 2
    lines = [
        b"2026-01-05T10:00:00.000Z [eventStore][loadMeta] CORRUPTED FILE DETECTED - Attempting recovery",
        b"2026-01-05T10:00:00.001Z [eventStore][loadMeta] Error: Unexpected token \x00 in JSON",
        b"2026-01-05T10:00:00.002Z [eventStore][loadMeta] File path: /d/branches/dar/modules/nul/live/events.meta.json",
        b"2026-01-05T10:00:00.003Z [eventStore][loadMeta] Recovery failed: \x00\x00",
    ]
    assert ingest(lines, source="node.log", host=HOST).new == 1
    for url, name in [
        (state.get_absolute_url(), "opsdash:module_detail"),
        (state.api_url(), "opsdash:api_module_detail"),
        (reverse("opsdash:incident_list"), "opsdash:incident_list"),
    ]:
        assert hit(operator, "get", url, name)[0].status_code == 200
    assert report.modules >= 3


# -- HTML, script and formulas in everything that reaches a page or an export ---------------------------

XSS_BRANCH = "<script>alert(1)"
XSS_MODULE = '"><img src=x onerror=alert(2)>'
XSS_MODULE2 = "'-alert(3)-'<svg onload=alert(3)>"
XSS_META = "</pre><script>alert(5)</script>"
XSS_DAMAGED = "<script>alert(6)</script>"
XSS_BACKUP = "<svg onload=alert(8)>"
XSS_LOG = "<script>alert(9)</script>"
XSS_SERVER = "<script>alert(10)</script>"
XSS_REASON = "<img src=x onerror=alert(11)>"
XSS_AUDIT = "<script>alert(12)</script>"
XSS_JOB = "<script>alert(13)</script>"
XSS_QUERY = '"><script>alert(14)</script>'
XSS_EVENT = "<script>alert(15)</script>"
XSS_ALL = (
    XSS_BRANCH,
    XSS_MODULE,
    XSS_MODULE2,
    XSS_META,
    XSS_DAMAGED,
    XSS_BACKUP,
    XSS_LOG,
    XSS_SERVER,
    XSS_REASON,
    XSS_AUDIT,
    XSS_JOB,
    XSS_QUERY,
    XSS_EVENT,
    "<script>alert",
    "<img src=x",
    "<svg onload",
)
FORMULAS = [
    "=1+2",
    "+1+2",
    "-1+2",
    "@SUM(1+1)",
    "\t=1+2",
    "\r=1+2",
    '=HYPERLINK("http://evil.example.com","x")',
    "=cmd|' /C calc'!A0",
]


@pytest.fixture
def hostile(world, store, add_events) -> dict[str, Any]:
    """Modules whose names, meta, backups, log lines, server log, audit entries and job carry HTML."""
    assert layout.check_name(XSS_BRANCH) and layout.check_name(XSS_MODULE) and layout.check_name(XSS_MODULE2)
    m1 = store.module(XSS_BRANCH, XSS_MODULE)
    add_events(m1)
    m1.append_event({"table": XSS_EVENT, "action": XSS_EVENT, "record": {"id": XSS_EVENT, "note": XSS_EVENT}})
    m1.update_meta({"purgeState": XSS_META, XSS_META: XSS_META})
    (m1.live_dir / LIVE_NAME).write_text(orjson.dumps({"note": XSS_BACKUP, XSS_BACKUP: 1}).decode())
    (m1.live_dir / "events.log.torn.1760000000001.bak").write_text(XSS_LOG)
    with open(m1.log_path, "a") as fh:
        fh.write(XSS_LOG + "\n")
    m2 = store.module(XSS_BRANCH, XSS_MODULE2)
    add_events(m2)
    m2.meta_path.write_text('{"totalEvents": 3, "x": "%s"} %s' % (XSS_DAMAGED, XSS_REASON))
    (m2.live_dir / "events.meta.json.corrupted.1760000000002.bak").write_text(XSS_DAMAGED + "{")
    m3 = store.module(FORMULAS[0], FORMULAS[3])  # a spreadsheet formula as branch and module names
    add_events(m3)
    scan_root()
    state1 = ModuleState.objects.get(module=XSS_MODULE)
    path = f"/srv/data/branches/{XSS_BRANCH}/modules/{XSS_MODULE}/live/events.meta.json"
    lines = [
        "2026-01-05T10:00:00.000Z [eventStore][loadMeta] CORRUPTED FILE DETECTED - Attempting recovery",
        f"2026-01-05T10:00:00.001Z [eventStore][loadMeta] Error: {XSS_SERVER}",
        f"2026-01-05T10:00:00.002Z [eventStore][loadMeta] File path: {path}",
        f"2026-01-05T10:00:00.003Z [eventStore][loadMeta] Recovery failed: {XSS_REASON}",
    ]
    report = ingest(lines, source=f"<b>{XSS_SERVER}</b>.log", host=HOST)
    assert report.new == 1 and not report.unmatched
    for formula in FORMULAS:
        AuditEntry.objects.create(
            actor=formula,
            ip="127.0.0.1",
            action=formula[:64],
            host=HOST,
            branch=XSS_BRANCH,
            module=XSS_MODULE,
            params={"x": XSS_AUDIT, "f": formula},
            outcome=formula[:32],
            detail=f"{formula}{XSS_AUDIT}",
        )
    job = Job.objects.create(
        kind="rebuild",
        host=HOST,
        branch=XSS_BRANCH,
        module=XSS_MODULE,
        target=state1,
        requested_by=XSS_JOB,
        status=Job.Status.FAILED,
        error=XSS_JOB,
        result={"note": XSS_JOB},
        progress_text=XSS_JOB,
    )
    IncidentNote.objects.create(incident=_an_incident(state1), author=XSS_JOB, text=f"{XSS_JOB}\n{XSS_AUDIT}")
    return {
        "states": list(ModuleState.objects.filter(branch=XSS_BRANCH)),
        "job": job,
        "m3": ModuleState.objects.get(module=FORMULAS[3]),
    }


def test_html_in_names_files_and_logs_is_escaped_on_every_page(hostile, world):
    auditor, operator = world.client(AUDITOR), world.client(OPERATOR)
    htmx = {"headers": {"HX-Request": "true"}}
    pages: list[tuple[str, str, dict]] = [
        (reverse("opsdash:module_list"), "opsdash:module_list", {}),
        (
            reverse("opsdash:module_list"),
            "opsdash:module_list",
            {"data": {"q": XSS_QUERY, "branch": XSS_BRANCH}, **htmx},
        ),
        (reverse("opsdash:incident_list"), "opsdash:incident_list", {"data": {"branch": XSS_BRANCH}}),
        (reverse("opsdash:incident_list"), "opsdash:incident_list", {"data": {"branch": XSS_QUERY}, **htmx}),
        (reverse("opsdash:backup_list"), "opsdash:backup_list", {"data": {"q": XSS_QUERY}}),
        (reverse("opsdash:backup_list"), "opsdash:backup_list", {"data": {"branch": XSS_BRANCH}}),
        (reverse("opsdash:audit_list"), "opsdash:audit_list", {"data": {"actor": XSS_QUERY}}),
        (reverse("opsdash:audit_list"), "opsdash:audit_list", {}),
        (hostile["job"].get_absolute_url(), "opsdash:job_detail", {}),
        (hostile["job"].get_absolute_url(), "opsdash:job_detail", htmx),
    ]
    for state in hostile["states"]:
        pages.append((state.get_absolute_url(), "opsdash:module_detail", {}))
        events = reverse("opsdash:module_events", kwargs=state.key)
        pages.append((events, "opsdash:module_events", {}))
        pages.append((events, "opsdash:module_events", {"data": {"q": XSS_QUERY, "table": XSS_EVENT}}))
        for incident in state.incidents.all():
            pages.append((incident.get_absolute_url(), "opsdash:incident_detail", {}))
        for backup in state.backups.all():
            pages.append((backup.get_absolute_url(), "opsdash:backup_detail", {}))
            pages.append((backup.get_absolute_url(), "opsdash:backup_detail", htmx))
    seen = ""
    for client in (auditor, operator):
        for url, name, extra in pages:
            response, body = hit(client, "get", url, name, forbid=XSS_ALL, **extra)
            assert response.status_code in (200, 403), (url, response.status_code)
            seen += body.decode()
    # the payloads did reach the pages, escaped: the test would be vacuous otherwise
    for escaped in [
        "&lt;script&gt;alert(1)",
        "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;",
        "&lt;/pre&gt;&lt;script&gt;alert(5)",
        "&lt;script&gt;alert(6)",
        "&lt;svg onload=alert(8)&gt;",
        "&lt;script&gt;alert(9)",
        "&lt;script&gt;alert(10)",
        "&lt;img src=x onerror=alert(11)&gt;",
        "&lt;script&gt;alert(12)",
        "&lt;script&gt;alert(13)",
        "&quot;&gt;&lt;script&gt;alert(14)",
        "&lt;script&gt;alert(15)",
    ]:
        assert escaped in seen, escaped


def test_html_in_the_json_api_stays_data(hostile, world):
    """JSON answers carry the text as it is, as data: application/json, nosniff, never HTML."""
    auditor = world.client(AUDITOR)
    urls = [
        (reverse("opsdash:api_module_list"), "opsdash:api_module_list"),
        (hostile["job"].api_url(), "opsdash:api_job_detail"),
        (reverse("opsdash:api_audit_list"), "opsdash:api_audit_list"),
    ]
    urls += [(s.api_url(), "opsdash:api_module_detail") for s in hostile["states"]]
    text = ""
    for url, name in urls:
        response, body = hit(auditor, "get", url, name)
        assert response["Content-Type"] == "application/json" and response["X-Content-Type-Options"] == "nosniff"
        text += orjson.dumps(orjson.loads(body)).decode()
    for raw in (XSS_BRANCH, XSS_MODULE, XSS_SERVER, XSS_REASON, XSS_AUDIT, XSS_JOB, XSS_LOG):
        assert raw in text, raw


def test_the_csv_export_neutralises_formulas_and_names_its_file_safely(hostile, world):
    auditor = world.client(AUDITOR)
    response, body = hit(
        auditor, "get", reverse("opsdash:api_audit_list"), "opsdash:api_audit_list", data={"format": "csv"}
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and "\r" not in disposition and "\n" not in disposition
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    header, rows = rows[0], rows[1:]
    assert len(rows) == len(FORMULAS) + 1
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), _breach(
                f"formula in the CSV export: {cell!r}"
            )
    actors = [row[header.index("actor")] for row in rows]
    assert sorted(a for a in actors if a != "operator") == sorted("'" + f for f in FORMULAS)
    module_pages = [row[header.index("module_page")] for row in rows if row[header.index("module_page")]]
    assert all(p.startswith("http://testserver/modules/") for p in module_pages)
    # the JSON export of the same rows, and a branch named like a formula in the zip's file name
    response, body = hit(
        auditor, "get", reverse("opsdash:api_audit_list"), "opsdash:api_audit_list", data={"format": "json"}
    )
    assert len(orjson.loads(body)["entries"]) == len(FORMULAS) + 1
    m3 = hostile["m3"]
    response, _ = hit(
        auditor, "get", reverse("opsdash:module_backups_download", kwargs=m3.key), "opsdash:module_backups_download"
    )
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', response["Content-Disposition"])
    xss = hostile["states"][0]
    response, _ = hit(
        auditor, "get", reverse("opsdash:module_backups_download", kwargs=xss.key), "opsdash:module_backups_download"
    )
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', response["Content-Disposition"])


# -- cookies, headers, login throttling ------------------------------------------------------------------

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_HTTPS": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_ALLOWED_HOSTS": "opsdash.example.com",
}
PRODUCTION_KEYS = [
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_SAMESITE",
    "LANGUAGE_COOKIE_SECURE",
    "LANGUAGE_COOKIE_HTTPONLY",
    "LANGUAGE_COOKIE_SAMESITE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "DEBUG",
    "ALLOWED_HOSTS",
]


def _production_settings(tmp_path: Path) -> dict[str, Any]:
    """The settings the README's production environment yields (read in a fresh interpreter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPSDASH_", "DATABASE_URL"))}
    env |= PRODUCTION_ENV | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "opsdash.settings",
    }
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{k: getattr(s, k, None) for k in {PRODUCTION_KEYS!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def test_cookies_and_headers_under_the_production_settings(world, settings, tmp_path):
    prod = _production_settings(tmp_path)
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"] and prod["LANGUAGE_COOKIE_SECURE"]
    assert prod["SECURE_SSL_REDIRECT"] and prod["SECURE_HSTS_SECONDS"] >= 31536000 and not prod["DEBUG"]
    for key, value in prod.items():
        setattr(settings, key, value)
    client = Client(enforce_csrf_checks=True, HTTP_HOST="opsdash.example.com")
    # plain HTTP is sent to HTTPS before anything else
    response, _ = hit(client, "get", reverse("opsdash:module_list"), "opsdash:module_list")
    assert response.status_code == 301 and response["Location"].startswith("https://opsdash.example.com/")
    response, _ = hit(client, "get", reverse("login"), "login", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf = response.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    token = csrf.value
    response, _ = hit(
        client,
        "post",
        reverse("login"),
        "login",
        secure=True,
        data={"login": "manager", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": "https://opsdash.example.com/accounts/login/"},
    )
    assert response.status_code == 302, response.content[:300]
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["secure"] and session["samesite"] == "Lax"
    token = client.cookies["csrftoken"].value  # a login rotates the token
    response, _ = hit(
        client,
        "post",
        reverse("set_language"),
        "set_language",
        secure=True,
        data={"language": "ar", "next": "https://evil.example.com/", "csrfmiddlewaretoken": token},
        headers={"Referer": "https://opsdash.example.com/"},
    )
    assert response.status_code == 302 and not response["Location"].startswith("https://evil")  # no open redirect
    language = response.cookies["django_language"]
    assert language["httponly"] and language["secure"] and language["samesite"] == "Lax"
    # every page of the dashboard, over HTTPS: HSTS and the rest (hit() checks the others)
    for p in _opsdash_patterns():
        case = case_for(p)
        if case.method != "get":
            continue
        url = fill(p.route, {k: quote(v, safe="") for k, v in world.kwargs[case.kwargs].items()})
        response, _ = hit(client, "get", url, p, secure=True)
        assert "max-age=31536000" in response.get("Strict-Transport-Security", ""), _breach(f"no HSTS on {url}")


def test_no_hsts_without_https_and_cookies_are_http_only_by_default(world):
    client = Client()
    response, _ = hit(client, "post", reverse("login"), "login", data={"login": "auditor", "password": PASSWORD})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["httponly"] and response.cookies["sessionid"]["samesite"] == "Lax"
    response, _ = hit(client, "get", reverse("opsdash:module_list"), "opsdash:module_list")
    assert "Strict-Transport-Security" not in response
    assert response.cookies.get("csrftoken") is None or response.cookies["csrftoken"]["samesite"] == "Lax"


def test_no_open_redirect_and_no_nul_in_a_login(world):
    """Every redirect a visitor can steer (after login, logout, a language change) stays on this site;
    a NUL byte in a login form is refused before it reaches the database (PostgreSQL would fail)."""
    evil = [
        "https://evil.example.com/",
        "//evil.example.com/",
        "/\\evil.example.com/",
        "https:evil.example.com",
        "javascript:alert(1)",
    ]
    for target in evil:
        for name, role, data in [
            ("login", ANON, {"login": "manager", "password": PASSWORD}),
            ("logout", MANAGER, {}),
            ("set_language", ANON, {"language": "en"}),
        ]:
            client = world.client(role)
            response, _ = hit(
                client, "post", reverse(name) + "?" + urlencode({"next": target}), name, data={**data, "next": target}
            )
            assert response.status_code == 302, (name, target, response.status_code)
            location = response["Location"]
            assert location.startswith("/") and not location.startswith(("//", "/\\")), _breach(
                f"{name} redirected to {location}"
            )
    for name, field_name in (("login", "login"), ("admin:login", "username")):
        for data in [{field_name: "root\x00", "password": PASSWORD}, {field_name: "root", "password": "pw\x00"}]:
            response, _ = hit(Client(), "post", reverse(name), name, data=data)
            assert response.status_code == 400, _breach(f"NUL in a login to {name} -> {response.status_code}")
    assert not LoginFailure.objects.exists()


def test_login_throttling_has_no_side_door(world, settings):
    """The throttle counts per address and per user name, ignores forwarded-for headers, and
    also guards the admin's own login form (a superuser's password is the best prize)."""
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    login, admin_login = reverse("login"), reverse("admin:login")
    client = Client()
    # one address trying many user names (credential stuffing), each request claiming another origin
    for i in range(3):
        response, _ = hit(
            client,
            "post",
            login,
            "login",
            data={"login": f"user{i}", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
            HTTP_X_REAL_IP=f"198.51.100.{i}",
        )
        assert response.status_code == 200
    response, _ = hit(
        client,
        "post",
        login,
        "login",
        data={"login": "root", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.99",
    )
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    response, _ = hit(client, "post", admin_login, "admin:login", data={"username": "root", "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    # one user name from many addresses, through the admin's form
    LoginFailure.objects.all().delete()
    for i in range(3):
        response, _ = hit(
            Client(REMOTE_ADDR=f"192.0.2.{i}"),
            "post",
            admin_login,
            "admin:login",
            data={"username": "root", "password": f"guess{i}"},
        )
        assert response.status_code == 200
    other = Client(REMOTE_ADDR="192.0.2.200")
    response, _ = hit(other, "post", admin_login, "admin:login", data={"username": "root", "password": PASSWORD})
    assert response.status_code == 429 and response["Retry-After"] and "_auth_user_id" not in other.session
    response, _ = hit(other, "post", login, "login", data={"login": "root", "password": PASSWORD})
    assert response.status_code == 429
    # another user from another address still gets in, through either form
    response, _ = hit(
        Client(REMOTE_ADDR="192.0.2.201"), "post", login, "login", data={"login": "operator", "password": PASSWORD}
    )
    assert response.status_code == 302
    LoginFailure.objects.all().delete()
    fresh = Client(REMOTE_ADDR="192.0.2.202")
    response, _ = hit(fresh, "post", admin_login, "admin:login", data={"username": "root", "password": PASSWORD})
    assert response.status_code == 302 and fresh.session["_auth_user_id"] == str(world.users[SUPER].pk)


# -- big inputs ------------------------------------------------------------------------------------------


@contextmanager
def measured() -> Iterator[dict[str, int]]:
    """Python memory peak (tracemalloc) and bytes read from files with os.read/os.pread, which
    every file read of eventstore goes through, while the block runs."""
    out = {"peak": 0, "read": 0}
    real_read, real_pread = os.read, os.pread

    def read(fd, n):
        data = real_read(fd, n)
        out["read"] += len(data)
        return data

    def pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        out["read"] += len(data)
        return data

    os.read, os.pread = read, pread
    tracemalloc.start()
    try:
        yield out
    finally:
        out["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        os.read, os.pread = real_read, real_pread


MB = 1 << 20
FIGURES: dict[str, str] = {}


def _figure(key: str, text: str) -> None:
    FIGURES[key] = text
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "attacks-big-inputs.txt").write_text("".join(f"{k}: {v}\n" for k, v in FIGURES.items()))


def _page(client: Client, url: str, name: str, **extra: Any) -> tuple[Any, bytes, dict[str, int]]:
    with measured() as m:
        response, body = hit(client, "get", url, name, **extra)
    return response, body, m


def test_a_1_gb_log_is_scanned_in_bounded_memory_and_no_page_reads_it(world, store, add_events, tmp_path):
    """A 1 GiB events.log (sparse: events, a 1 GiB run of NUL bytes as a crash can leave, events):
    the scan reports the run as one bad line without holding it, and the module page, its JSON
    and the overview read none of it."""
    module = store.module("big", "log")
    add_events(module, count=5)
    with open(module.log_path, "r+b") as fh:
        fh.seek(1 << 30)
        fh.write(b'\n{"id": "evt-late", "sequence": 7, "table": "t", "record": {"id": "x"}}\n')
    try:
        assert module.log_path.stat().st_size > 1 << 30
        with measured() as m:
            started = time.monotonic()
            summary = logmod.summarize(module.log_path, workers=1)
            took = time.monotonic() - started
        assert summary.bad_line_count == 1 and "longer than" in summary.bad_lines[0]["error"]
        assert summary.events == 6 and summary.last_event_id == "evt-late"
        assert m["peak"] < 64 * MB, m  # bounded by the longest line kept (16 MiB), not the file
        _figure("1 GiB log, one pass (summarize, 1 worker)", f"{took:.1f} s, Python peak {m['peak'] / MB:.1f} MiB")
        started = time.monotonic()
        scan_root()
        _figure("1 GiB log, scan_root() of the data root", f"{time.monotonic() - started:.1f} s")
        state = ModuleState.objects.get(branch="big", module="log")
        assert "log_bad_line" in state.codes and state.log_size > 1 << 30
        operator = world.client(OPERATOR)
        for url, name in [
            (state.get_absolute_url(), "opsdash:module_detail"),
            (state.api_url(), "opsdash:api_module_detail"),
            (reverse("opsdash:module_list"), "opsdash:module_list"),
        ]:
            response, body, m = _page(operator, url, name)
            assert response.status_code == 200 and m["read"] < MB and m["peak"] < 4 * MB, (url, m)
            _figure(
                f"1 GiB log, GET {name}",
                f"{m['read']} bytes read from files, Python peak {m['peak'] / MB:.2f} MiB, {len(body)} bytes sent",
            )
    finally:
        module.log_path.unlink()


def test_a_huge_server_log_line_is_ingested_in_bounded_memory(world, tmp_path):
    """``manage.py ingest_logs`` on a journal whose recovery sits after a 256 MiB line (iterating
    the file held the whole line)."""
    log = tmp_path / "node.log"
    with open(log, "wb") as fh:
        fh.seek(1 << 28)
        fh.write(
            b"\n2026-01-05T10:00:00.000Z [eventStore][loadMeta] CORRUPTED FILE DETECTED - Attempting recovery\n"
            b"2026-01-05T10:00:00.001Z [eventStore][loadMeta] File path: /srv/data/branches/dar/modules/pos/live/events.meta.json\n"
            b"2026-01-05T10:00:00.002Z [eventStore][loadMeta] Meta file rebuilt successfully\n"
        )
    try:
        out = io.StringIO()
        started = time.monotonic()
        with measured() as m:
            call_command("ingest_logs", str(log), stdout=out)
        took = time.monotonic() - started
        assert "1 recoveries found: 1 new (1 recovered" in out.getvalue(), out.getvalue()
        assert m["peak"] < 8 * MB, m
        _figure("256 MiB server log line, manage.py ingest_logs", f"{took:.1f} s, Python peak {m['peak'] / MB:.1f} MiB")
    finally:
        log.unlink()


def test_a_50_mb_meta_and_backup_are_previewed_capped_and_downloaded_streaming(world, store, add_events):
    module = store.module("big", "meta")
    add_events(module, count=3)
    meta = orjson.loads(module.meta_path.read_bytes())
    meta["padding"] = "<x>" * (50 * MB // 3)
    data = orjson.dumps(meta, option=orjson.OPT_INDENT_2)
    assert len(data) > 50 * MB
    module.meta_path.write_bytes(data)
    os.link(module.meta_path, module.live_dir / LIVE_NAME)  # the same 50 MB as a backup, no extra disk
    try:
        with measured() as m:
            scan_root()
        _figure(
            "50 MB meta + backup, scan_root()",
            f"{m['read'] / MB:.0f} MiB read, Python peak {m['peak'] / MB:.0f} MiB (the scanner parses the meta whole, as the Node server does)",
        )
        state = ModuleState.objects.get(branch="big", module="meta")
        backup = state.backups.get()
        auditor = world.client(AUDITOR)
        for url, name, extra in [
            (state.get_absolute_url(), "opsdash:module_detail", {}),
            (backup.get_absolute_url(), "opsdash:backup_detail", {}),
            (backup.get_absolute_url(), "opsdash:backup_detail", {"headers": {"HX-Request": "true"}}),
            (state.api_url(), "opsdash:api_module_detail", {}),
        ]:
            response, body, m = _page(auditor, url, name, **extra)
            assert response.status_code == 200 and m["read"] <= 128 * 1024 and m["peak"] < 4 * MB, (url, m)
            assert len(body) < 512 * 1024, (url, len(body))
            _figure(
                f"50 MB meta, GET {name}{' (htmx)' if extra else ''}",
                f"{m['read']} bytes read from files, Python peak {m['peak'] / MB:.2f} MiB, {len(body)} bytes sent",
            )
        for url, name, limit in [
            (backup.download_url(), "opsdash:backup_download", 4 * MB),
            (reverse("opsdash:module_backups_download", kwargs=state.key), "opsdash:module_backups_download", 8 * MB),
        ]:
            with measured() as m:
                TALLY.requests += 1
                TALLY.patterns.add(name)
                response = auditor.get(url)
                size = 0
                for chunk in response.streaming_content:
                    assert SENTINEL not in chunk
                    size += len(chunk)
            assert response.status_code == 200 and m["peak"] < limit, (url, m)
            _figure(f"50 MB backup, GET {name}", f"{size} bytes streamed, Python peak {m['peak'] / MB:.2f} MiB")
    finally:
        for path in (module.meta_path, module.live_dir / LIVE_NAME):
            path.unlink(missing_ok=True)


def _insert_modules(count: int, now, finding: list[dict]) -> None:
    """``count`` ModuleState rows in 500-module branches, a third of each status, inserted with
    executemany (bulk_create spends most of a minute preparing 100,000 objects on a busy machine)."""
    fields = [f for f in ModuleState._meta.concrete_fields if not f.primary_key]
    base = ModuleState(
        host=HOST,
        branch="",
        module="",
        status=Status.HEALTHY,
        status_rank=0,
        findings=[],
        codes="",
        stats={"log_events": 4},
        log_events=4,
        meta_total_events=3,
        first_seen=now,
        last_changed=now,
        status_since=now,
    )
    prepared = {f.column: f.get_db_prep_save(getattr(base, f.attname), connection) for f in fields}
    statuses = [
        (Status.HEALTHY, 0, prepared["findings"], ""),
        (Status.WARNING, 1, None, " meta_drift "),
        (Status.CRITICAL, 2, None, " meta_drift "),
    ]
    findings_field = ModuleState._meta.get_field("findings")
    with_finding = findings_field.get_db_prep_save(finding, connection)
    columns = [f.column for f in fields]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        connection.ops.quote_name(ModuleState._meta.db_table),
        ", ".join(connection.ops.quote_name(c) for c in columns),
        ", ".join(["%s"] * len(columns)),
    )
    with connection.cursor() as cursor:
        for start in range(0, count, 10_000):
            rows = []
            for i in range(start, min(count, start + 10_000)):
                status, rank, findings, codes = statuses[i % 3]
                values = prepared | {
                    "branch": f"b{i // 200:03d}",
                    "module": f"m{i % 200:03d}",
                    "status": status,
                    "status_rank": rank,
                    "findings": findings if rank == 0 else with_finding,
                    "codes": codes,
                }
                rows.append([values[c] for c in columns])
            cursor.executemany(sql, rows)


def test_100000_modules_page_and_count_in_bounded_size_queries_and_memory(
    world, settings, django_assert_max_num_queries
):
    now = timezone.now()
    finding = [
        {
            "code": "meta_drift",
            "severity": "warning",
            "message": "meta disagrees with the log: totalEvents is 3, the log gives 4",
        }
    ]
    started = time.monotonic()
    _insert_modules(100_000, now, finding)
    states = list(ModuleState.objects.filter(branch="b000", module__lt="m050"))
    Incident.objects.bulk_create(
        [
            Incident(
                module=s,
                opened_at=now - timedelta(days=i % 40),
                severity=Status.WARNING,
                codes=" meta_drift ",
                findings=finding,
            )
            for i, s in enumerate(states * 20)
        ]
    )
    ScanHost.objects.update_or_create(
        host=HOST,
        defaults={
            "data_root": str(world.root),
            "last_pass_at": now,
            "modules": 100_000,
            "worst_status": Status.CRITICAL,
        },
    )
    # one module with 3,000 backups and 3,000 incidents (the Node server leaves a backup per failed recovery)
    pos = ModuleState.objects.get(branch="dar", module="pos")
    Backup.objects.bulk_create(
        [
            Backup(
                module=pos,
                name=layout.meta_backup_name(1_700_000_000_000 + i),
                kind="meta",
                size=10,
                sha256="0" * 64,
                created_at=now,
                first_seen=now,
                last_changed=now,
            )
            for i in range(3000)
        ]
    )
    Incident.objects.bulk_create(
        [
            Incident(
                module=pos,
                opened_at=now - timedelta(minutes=i),
                ended_at=now,
                severity=Status.CRITICAL,
                codes=" meta_corrupt ",
                findings=finding,
                source=Incident.Source.STORE_SERVER,
            )
            for i in range(3000)
        ]
    )
    assert ModuleState.objects.count() == 100_002
    _figure("100,000 modules, inserted", f"{time.monotonic() - started:.1f} s")
    manager = world.client(MANAGER)
    token = "metrics-token"
    pages = [
        (reverse("opsdash:module_list"), "opsdash:module_list", {}),
        (reverse("opsdash:module_list"), "opsdash:module_list", {"data": {"page": "1500"}}),
        (reverse("opsdash:module_list"), "opsdash:module_list", {"data": {"page": "99999999"}}),
        (
            reverse("opsdash:module_list"),
            "opsdash:module_list",
            {"data": {"q": "m19", "status": "critical", "sort": "events"}},
        ),
        (
            reverse("opsdash:module_list"),
            "opsdash:module_list",
            {"data": {"page": "3"}, "headers": {"HX-Request": "true"}},
        ),
        (reverse("opsdash:api_module_list"), "opsdash:api_module_list", {}),
        (reverse("opsdash:api_module_list"), "opsdash:api_module_list", {"data": {"page": "200"}}),
        (reverse("opsdash:incident_list"), "opsdash:incident_list", {}),
        (reverse("opsdash:incident_list"), "opsdash:incident_list", {"data": {"code": "meta_drift", "branch": "b000"}}),
        (reverse("opsdash:backup_list"), "opsdash:backup_list", {}),
        (reverse("opsdash:audit_list"), "opsdash:audit_list", {}),
        (reverse("opsdash:metrics"), "opsdash:metrics", {"headers": {"Authorization": f"Bearer {token}"}}),
        (reverse("opsdash:healthz"), "opsdash:healthz", {}),
        (pos.get_absolute_url(), "opsdash:module_detail", {}),
        (pos.get_absolute_url(), "opsdash:module_detail", {"data": {"backups": "30", "incidents": "7"}}),
    ]
    settings.OPSDASH_METRICS_TOKEN = token
    for url, name, extra in pages:
        client = world.client(SUPER) if name == "opsdash:audit_list" else manager
        # a constant: the overview's two for the mutes in force and their counts included
        with django_assert_max_num_queries(18):
            response, body, m = _page(client, url, name, **extra)
        assert response.status_code == 200, (url, response.status_code)
        assert len(body) < 2 * MB and m["peak"] < 24 * MB, (url, extra, len(body), m)
        if name == "opsdash:api_module_list":
            answer = orjson.loads(body)
            assert answer["count"] == 100_000 + 2 and len(answer["modules"]) <= 500 and answer["pages"] == 201
        if name == "opsdash:module_detail":
            html = body.decode()
            assert html.count("<tr>") <= 101 and html.count('class="incident ') == 100, len(body)
            assert len(re.findall(r"Page \d+ of 31 \(3,00[12] in all\)", html)) == 2
        label = f"100,000 modules, GET {name} {extra.get('data', '')}".rstrip()
        _figure(label, f"{len(body)} bytes, Python peak {m['peak'] / MB:.1f} MiB")


# -- the ten holes past the first tour ---------------------------------------------------------------


def test_backup_contents_need_the_download_permission_and_every_preview_is_audited(world):
    """A manager sees a backup's metadata, never its bytes: not on its page, not in the htmx
    preview, not for an archived copy; operators and auditors see the preview, each one audited."""
    marker = (world.root / "dar" / "modules" / "pos" / "live" / LIVE_NAME).read_text()[:30]  # the meta the backup holds
    archived_marker = '"totalEvents": 1'
    for backup, shown in ((world.live, marker), (world.archived, archived_marker)):
        url = reverse("opsdash:backup_detail", kwargs={"pk": backup.pk})
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response, body = hit(world.client(MANAGER), "get", url, "opsdash:backup_detail", **headers)
            assert response.status_code == 200 and backup.sha256.encode() in body or headers, _breach(f"manager, {url}")
            assert shown.encode() not in body, _breach(f"a manager read the contents of {backup.name} ({headers})")
            assert b"shown to those who may download backups" in body, _breach(
                f"no reason given to the manager on {url}"
            )
        before = AuditEntry.objects.filter(action="backup_preview").count()
        for role in (OPERATOR, AUDITOR):
            response, body = hit(world.client(role), "get", url, "opsdash:backup_detail", HTTP_HX_REQUEST="true")
            assert response.status_code == 200 and shown.encode() in body.replace(b"&quot;", b'"'), _breach(
                f"{role} saw no preview"
            )
        assert marker.encode() not in body.replace(b"&quot;", b'"') or backup is world.live
        previews = AuditEntry.objects.filter(action="backup_preview").order_by("-id")[:2]
        assert AuditEntry.objects.filter(action="backup_preview").count() == before + 2
        assert {(e.actor, e.module, e.params["backups"][0]) for e in previews} == {
            ("operator", "pos", backup.name),
            ("auditor", "pos", backup.name),
        }
    page, body = hit(
        world.client(MANAGER),
        "get",
        reverse("opsdash:module_detail", kwargs=world.kwargs["module"]),
        "opsdash:module_detail",
    )
    assert b'hx-target="#backup-preview"' not in body, _breach("the module page offers managers a preview")


@pytest.mark.parametrize(
    "header", ["HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_VIA", "HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED"]
)
def test_metrics_want_the_token_from_anything_that_came_through_a_proxy(world, settings, header):
    settings.OPSDASH_METRICS_TOKEN = token = "scrape-token-0123456789"
    url = reverse("opsdash:metrics")
    response, _ = hit(Client(), "get", url, "opsdash:metrics", **{header: "https"})
    assert response.status_code == 403, _breach(f"/metrics with only {header} -> {response.status_code}")
    response, _ = hit(
        Client(), "get", url, "opsdash:metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **{header: "https"}
    )
    assert response.status_code == 200


def test_metrics_behind_the_documented_tls_proxy_want_the_token(world, settings):
    settings.OPSDASH_BEHIND_PROXY = True  # DJANGO_BEHIND_TLS_PROXY=1: the proxy is on loopback too
    settings.OPSDASH_METRICS_TOKEN = token = "scrape-token-0123456789"
    url = reverse("opsdash:metrics")
    response, _ = hit(Client(), "get", url, "opsdash:metrics")  # from 127.0.0.1, no header at all
    assert response.status_code == 403, _breach(f"/metrics behind a proxy without the token -> {response.status_code}")
    response, body = hit(Client(), "get", url, "opsdash:metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and b"opsdash_modules" in body
    for variable, expected in (
        ({"DJANGO_BEHIND_TLS_PROXY": "1"}, True),
        ({"OPSDASH_TRUSTED_PROXIES": "10.0.0.1"}, True),
        ({}, False),
    ):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from django.conf import settings; print(settings.OPSDASH_BEHIND_PROXY)",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_BEHIND", "OPSDASH_TRUSTED"))},
                "DJANGO_SETTINGS_MODULE": "opsdash.settings",
                **variable,
            },
        )
        assert out.stdout.strip() == str(expected), out.stderr


def _login(client: Client, name: str, username: str, password: str) -> int:
    field = "username" if name == "admin:login" else "login"  # the admin's form names it the old way
    return hit(client, "post", reverse(name), name, data={field: username, "password": password})[0].status_code


@pytest.mark.parametrize("form", ["login", "admin:login"])
def test_respelled_user_names_share_one_throttle(world, settings, form):
    """After the limit of failures for ``root``, the names authentication reads as ``root`` (a
    space around it, fullwidth letters, capitals) get 429 from fresh addresses, even with the
    right password."""
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    for i in range(3):
        assert _login(Client(REMOTE_ADDR=f"192.0.2.{i}"), form, "root", "wrong") == 200
    for i, spelling in enumerate([" root", "root ", "\uff52\uff4f\uff4f\uff54", "ROOT", "\uff32oot"]):
        client = Client(REMOTE_ADDR=f"198.51.100.{i}")
        status = _login(client, form, spelling, PASSWORD)
        assert status == 429 and "_auth_user_id" not in client.session, _breach(
            f"{spelling!r} got past the throttle via {form}: {status}"
        )


def test_an_ipv6_client_is_counted_by_its_64(world, settings):
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    for i in range(3):
        assert _login(Client(REMOTE_ADDR=f"2001:db8:1:2::{i + 1:x}"), "login", f"user{i}", "wrong") == 200
    assert _login(Client(REMOTE_ADDR="2001:db8:1:2:ffff:1:2:3"), "login", "operator", PASSWORD) == 429, _breach(
        "a new address in the same /64"
    )
    assert (
        _login(Client(REMOTE_ADDR="2001:db8:1:3::1"), "login", "operator", PASSWORD) == 302
    )  # the next /64 is another client


def test_behind_a_trusted_proxy_each_client_is_itself(world, settings):
    """Without a trusted proxy, X-Forwarded-For is the client's to write and is ignored; from a
    trusted proxy, the client is the right-most hop that is not a trusted proxy: one client's
    failures lock out that client, not everyone behind the proxy, and the trail names it."""
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    settings.OPSDASH_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24")]
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for i in range(3):
        assert (
            _login(Client(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.66, 10.0.0.9"), "login", f"user{i}", "wrong") == 200
        )
    assert _login(Client(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.66"), "login", "operator", PASSWORD) == 429
    other = Client(**proxy, HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.5")  # the left hop is the client's own claim
    assert _login(other, "login", "operator", PASSWORD) == 302, _breach(
        "one client behind the proxy locked out another"
    )
    assert set(LoginFailure.objects.values_list("ip", flat=True)) == {"203.0.113.66"}
    response, _ = hit(
        other, "post", reverse("opsdash:module_rebuild", kwargs=world.kwargs["module"]), "opsdash:module_rebuild"
    )
    assert AuditEntry.objects.filter(action="rebuild", actor="operator").exists() or response.status_code == 302
    entry = AuditEntry.objects.order_by("-id").first()
    job = Job.objects.order_by("-id").first()
    assert job.requested_from == "203.0.113.5", _breach(f"the trail names {job.requested_from}, not the client")
    # the same header from an address that is not a trusted proxy is ignored
    spoof = Client(REMOTE_ADDR="192.0.2.50", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert _login(spoof, "login", "auditor", "wrong") == 200
    assert LoginFailure.objects.filter(ip="192.0.2.50").exists() and entry is not None
    # a hop that is not an address ends the walk at the last trusted proxy
    garbage = Client(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.66, not-an-ip")
    _login(garbage, "login", "nobody", "wrong")
    assert LoginFailure.objects.filter(ip="10.0.0.2").exists()


@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_passwords_never_try_more_than_the_limit(world, settings, live_server, monkeypatch):
    """40 concurrent wrong passwords from one address, each password check slowed to 0.3 s:
    at most the limit of them are checked; the others get 429 at once."""
    import threading
    import urllib.error
    import urllib.request

    from django.contrib.auth.hashers import MD5PasswordHasher

    settings.OPSDASH_LOGIN_MAX_FAILURES = 10
    checked = []
    real = MD5PasswordHasher.verify

    def slow(self, password, encoded):
        checked.append(password)
        time.sleep(0.3)
        return real(self, password, encoded)

    monkeypatch.setattr(MD5PasswordHasher, "verify", slow)
    statuses = []
    start = threading.Barrier(40)

    def guess(i: int) -> None:
        session = Client()
        token = session.get(reverse("login")).cookies["csrftoken"].value
        data = urlencode({"login": "root", "password": f"guess-{i}", "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(
            live_server.url + reverse("login"), data=data, headers={"Cookie": f"csrftoken={token}"}
        )
        start.wait()
        for _ in range(5):  # the live server's listen backlog is small: a refused connection is tried again
            try:
                with urllib.request.urlopen(request, timeout=60) as r:
                    statuses.append(r.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except OSError:
                time.sleep(0.2)
                continue
            return

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    TALLY.requests += 40
    TALLY.patterns.add("login")
    assert sorted(set(statuses)) == [200, 429] and len(statuses) == 40, statuses
    assert len(checked) <= 10 and statuses.count(200) <= 10, _breach(
        f"{len(checked)} passwords checked, limit 10: {sorted(checked)} {statuses}"
    )


def test_refusals_never_bloat_the_trail_or_its_filters(world, settings):
    forged = {"host": HOST, "branch": "dar\u202eevil", "module": "pos\u0085x"}
    manager = world.client(MANAGER)
    url = reverse("opsdash:module_rebuild", kwargs=forged)
    response, _ = hit(manager, "post", url, "opsdash:module_rebuild")
    assert response.status_code == 403
    entry = AuditEntry.objects.filter(outcome="refused").order_by("-id").first()
    assert (entry.host, entry.branch, entry.module) == ("", "", ""), _breach(
        f"a forged name was recorded as a place: {entry.branch!r}"
    )
    assert entry.params["path"] == urllib.parse.unquote(url)[:500]
    known = reverse("opsdash:module_rebuild", kwargs=world.kwargs["module"])
    hit(manager, "post", known, "opsdash:module_rebuild")
    entry = AuditEntry.objects.filter(outcome="refused").order_by("-id").first()
    assert (entry.host, entry.branch, entry.module) == (HOST, "dar", "pos")  # a real place is named
    response, body = hit(world.client(AUDITOR), "get", reverse("opsdash:audit_list"), "opsdash:audit_list")
    branches = re.search(rb'<select name="branch">(.*?)</select>', body, re.S).group(1)
    assert "\u202e".encode() not in branches and b"evil" not in branches, _breach(
        "a forged branch in the audit filters"
    )
    assert b"<option" in branches  # the known ones are there
    for _ in range(80):
        hit(manager, "post", url, "opsdash:module_rebuild")
    recorded = AuditEntry.objects.filter(
        outcome="refused", actor="manager", at__gte=timezone.now() - timedelta(minutes=1)
    ).count()
    assert recorded <= 30, _breach(f"{recorded} refusals recorded in a minute")


def test_zip_entry_names_are_safe_and_the_manifest_maps_them(world, store, add_events):
    hostile = 'x"<\u202eb\u0085y'
    module = store.module(hostile, "pos")
    add_events(module)
    (module.live_dir / LIVE_NAME).write_text("{")
    scan_root()
    state = ModuleState.objects.get(branch=hostile)
    url = reverse("opsdash:module_backups_download", kwargs=state.key)
    response, _ = hit(world.client(AUDITOR), "get", url, "opsdash:module_backups_download")
    assert response.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(b"".join(world.client(AUDITOR).get(url).streaming_content)))
    names = zf.namelist()
    assert all(re.fullmatch(r"[A-Za-z0-9._~/-]+", n) for n in names), _breach(f"unsafe zip entry names: {names!r}")
    manifest = zf.read("MANIFEST.sha256").decode("ascii")
    entry = next(n for n in names if n != "MANIFEST.sha256")
    assert f"# NAME {entry} = " in manifest and "\\u202e" in manifest and "\\u0085" in manifest
    sums = [line.split("  ") for line in manifest.splitlines() if not line.startswith("#")]
    assert sums == [[state.backups.get().sha256, entry]]


def test_healthz_tells_strangers_only_the_status(world, settings, monkeypatch):
    from django.db import DatabaseError
    from django.db.backends.utils import CursorWrapper

    response, body = hit(Client(), "get", reverse("opsdash:healthz"), "opsdash:healthz")
    assert orjson.loads(body) == {"status": "ok"} and str(world.root).encode() not in body, _breach(
        "/healthz told its data root"
    )
    settings.OPSDASH_DATA_ROOT = world.root / "gone"
    response, body = hit(Client(), "get", reverse("opsdash:healthz"), "opsdash:healthz")
    assert response.status_code == 503 and orjson.loads(body) == {"status": "error"}, _breach("/healthz told why")

    def down(self, sql, params=None):
        raise DatabaseError('connection to server at "db.internal" (10.1.2.3), port 5432 failed for user "opsdash"')

    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", down)
        response, body = hit(Client(), "get", reverse("opsdash:healthz"), "opsdash:healthz")
    assert response.status_code == 503 and b"10.1.2.3" not in body and b"db.internal" not in body, _breach(
        "/healthz told the database error"
    )


# -- API tokens and branch managers --------------------------------------------------------------


def _api_patterns() -> list[Pattern]:
    return [p for p in _opsdash_patterns() if p.route.startswith("api/")]


def test_tokens_on_every_api_url_forged_revoked_expired_read_only_and_in_the_query(world, settings):
    settings.OPSDASH_LOGIN_MAX_FAILURES = (
        10_000  # every forged token counts as a failure; the throttle has its own test
    )
    operator = world.users[OPERATOR]
    _, good = tokens.create(operator, "good")
    _, read_only = tokens.create(operator, "reader", read_only=True)
    revoked_row, revoked = tokens.create(operator, "gone")
    tokens.revoke(revoked_row)
    expired_row, expired = tokens.create(operator, "old")
    ApiToken.objects.filter(pk=expired_row.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    forged = [
        tokens.PREFIX + "A" * 43,
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        good.upper(),
        "Bearer",
        "' OR 1=1 --",
        good + "\u202e",
    ]
    patterns = _api_patterns()
    assert len(patterns) >= 8
    for p in patterns:
        case = case_for(p)
        url = fill(p.route, {k: quote(v, safe="") for k, v in world.kwargs[case.kwargs].items()})
        for token in [*forged, revoked, expired]:
            response, _ = hit(Client(), case.method, url, p, data=case.data, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 401, _breach(
                f"{case.method} {url} with a bad token -> {response.status_code}"
            )
        response, _ = hit(Client(), "get", url, p, data={"token": good})
        assert response.status_code == 400, _breach(f"a token in the query of {url} -> {response.status_code}")
        if case.method == "post":
            state = db_state()
            response, _ = hit(Client(), "post", url, p, data=case.data, HTTP_AUTHORIZATION=f"Bearer {read_only}")
            assert response.status_code == 403 and db_state() == state, _breach(f"a read-only token acted on {url}")
            response, _ = hit(Client(), "post", url, p, data=case.data, HTTP_AUTHORIZATION=f"Bearer {good}")
            assert response.status_code in (202, 409), _breach(
                f"the operator's token could not act on {url}: {response.status_code}"
            )
        else:
            response, _ = hit(Client(), "get", url, p, HTTP_AUTHORIZATION=f"Bearer {read_only}")
            assert response.status_code in (200, 403), _breach(
                f"a read-only token could not read {url}: {response.status_code}"
            )
    # Only the API takes tokens: a page with one is still the login redirect.
    response, _ = hit(
        Client(), "get", reverse("opsdash:module_list"), "opsdash:module_list", HTTP_AUTHORIZATION=f"Bearer {good}"
    )
    assert response.status_code == 302


OTHER = "zz-other-branch-SECRETNAME"


@pytest.fixture
def other_branch(world, store, add_events):
    """A second branch, with a damaged module, a backup, an incident, a job and an audit entry."""
    module = store.module(OTHER, "pos")
    add_events(module)
    text = module.meta_path.read_text()
    (module.live_dir / "events.meta.json.corrupted.1760000000009.bak").write_text(text + "}")
    module.meta_path.write_text(text + text[-20:])
    record_pass(scan_root())
    row = ModuleState.objects.get(branch=OTHER)
    job = Job.objects.create(
        kind="verify",
        host=HOST,
        branch=OTHER,
        module="pos",
        target=row,
        requested_by="operator",
        status=Job.Status.SUCCEEDED,
        result={"status": "critical"},
    )
    AuditEntry.objects.create(
        actor="operator", ip="127.0.0.1", action="verify", host=HOST, branch=OTHER, module="pos", outcome="ok"
    )
    limited = {}
    for role, group in ((OPERATOR, "operators"), (AUDITOR, "auditors"), (MANAGER, "managers")):
        user = User.objects.create_user(f"dar-{role}", password=PASSWORD)
        user.groups.set([Group.objects.get(name=group)])
        limit_user(user, ["dar"])
        limited[role] = user
    kwargs = {
        "module": {"host": HOST, "branch": OTHER, "module": "pos"},
        "branch": {"host": HOST, "branch": OTHER},
        "backup": {"pk": str(row.backups.get().pk)},
        "job": {"pk": str(job.pk)},
        "incident": {"pk": str(_an_incident(row).pk)},
        "mute": {"pk": str(_a_mute(row).pk)},
        "window": {"pk": str(_a_window(OTHER).pk)},
        "none": {},
        "token": world.kwargs["token"],
    }
    return {"users": limited, "kwargs": kwargs, "row": row}


def test_a_user_limited_to_a_branch_gets_nothing_of_another_from_any_url(world, other_branch):
    """Every URL pattern (the tour's list; a new one fails until it has a case), by a limited
    manager, auditor and operator: another branch's module, backup, job and branch URLs are 404,
    lists, counts, charts, filters and exports never name it, and nothing is queued for it."""
    # A page may echo the filter typed into it; what it must not show is the branch's data: its
    # name where nothing asked for it, its module's links, its backup's name.
    echoing = [{"branch": OTHER}, {"branch": OTHER, "format": "csv"}, {"branch": OTHER, "format": "json"}]
    filters = [{}, {"q": OTHER[:8]}, {"format": "csv"}, *echoing]
    data_needles = (f"/{OTHER}/pos".encode(), b"1760000000009", f"{OTHER}/pos".encode())
    for p in _opsdash_patterns():
        case = case_for(p)
        if case.kwargs not in other_branch["kwargs"] or p.name in ("opsdash:healthz", "opsdash:metrics"):
            continue
        url = fill(p.route, {k: quote(v, safe="") for k, v in other_branch["kwargs"][case.kwargs].items()})
        for role, user in other_branch["users"].items():
            client = Client()
            client.force_login(user)
            for query in filters if case.method == "get" and case.kwargs == "none" else [{}]:
                jobs_before = Job.objects.count()
                response, body = hit(
                    client,
                    case.method,
                    url,
                    p,
                    data={**case.data, **({"confirm": OTHER} if case.kwargs == "branch" else {}), **query},
                )
                if case.kwargs != "none":  # its URL names the branch (and every page echoes its URL): 404, and no data
                    needles = (b"1760000000009",)
                else:
                    needles = data_needles if query in echoing else (*data_needles, OTHER.encode())
                assert not any(n in body for n in needles), _breach(
                    f"{role} limited to dar saw {OTHER} on {case.method} {url}?{query}"
                )
                assert Job.objects.count() == jobs_before, _breach(f"{role} limited to dar queued a job through {url}")
                if case.kwargs in ("module", "branch", "backup", "job", "incident", "mute", "window"):
                    assert response.status_code in (403, 404), _breach(
                        f"{role} limited to dar: {case.method} {url} -> {response.status_code}"
                    )
    # ...and their own branch is all there
    client = Client()
    client.force_login(other_branch["users"][AUDITOR])
    body = client.get(reverse("opsdash:module_list")).content.decode()
    assert "dar" in body and OTHER not in body
    listed = orjson.loads(client.get(reverse("opsdash:api_module_list")).content)
    assert {m["branch"] for m in listed["modules"]} == {"dar"} and listed["count"] == 2
