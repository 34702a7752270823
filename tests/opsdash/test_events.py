"""The event browser and the story of an incident (issue 14), on real files through the pages,
the JSON API and the exports, for each role."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from django.urls import reverse

from opsdash.models import AuditEntry, Incident, IncidentNote, ModuleState
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

KEY = {"host": "testhost", "branch": "dar", "module": "pos"}


def _event(n: int, **extra) -> dict:
    return {
        "table": "order_header" if n % 2 else "order_line",
        "action": "module:insert",
        "record": {"id": f"ord-{n}", "secret": f"card-{n}", "totalDue": n * 10, "note": f"note-{n}-end"},
        "meta": {"recordRef": {"table": "order_header", "key": f"ord-{n}"}, "source": "pos-1"},
        **extra,
    }


@pytest.fixture
def pos(store):
    module = store.module("dar", "pos")
    for n in range(120):
        module.append_event(_event(n))
    scan_root()
    return module


def _url(name: str = "opsdash:module_events", **query) -> str:
    base = reverse(name, kwargs=KEY)
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _ids(html: str) -> list[str]:
    return [part.split("<", 1)[0] for part in html.split('<td><code dir="ltr">evt-')[1:]]


def test_newest_first_fifty_a_page_and_cursors_walk_the_whole_log(pos, operator_client):
    api = operator_client.get(_url("opsdash:api_module_events")).json()
    assert len(api["events"]) == 50 and api["newer"] is None and api["older"].startswith("http")
    sequences = [e["sequence"] for e in api["events"]]
    assert sequences == list(range(120, 70, -1))
    seen = list(sequences)
    while api["older"]:
        api = operator_client.get(api["older"]).json()
        seen += [e["sequence"] for e in api["events"]]
    assert seen == list(range(120, 0, -1))  # every event once, newest first, by byte offsets
    back = operator_client.get(api["newer"]).json()
    assert back["events"][0]["sequence"] > api["events"][0]["sequence"]
    assert "cursor=" in api["newer"] and "page=" not in api["newer"]


def test_the_page_shows_positions_and_the_whole_event_escaped(pos, operator_client):
    html = operator_client.get(_url()).content.decode()
    assert html.count('class="event-body') == 50
    assert "card-119" in html and "&quot;totalDue&quot;: 1190" in html
    assert "Older" in html and "Export (CSV)" in html


def test_filters_by_table_record_event_sequence_time_and_text(pos, operator_client):
    def api(**query):
        return operator_client.get(_url("opsdash:api_module_events", **query)).json()["events"]

    assert {e["table"] for e in api(table="order_line")} == {"order_line"}
    assert [e["record_key"] for e in api(record="ord-7")] == ["ord-7"]
    one = api(sequence=42)
    assert [e["sequence"] for e in one] == [42]
    assert [e["sequence"] for e in api(event=one[0]["id"])] == [42]
    assert [e["sequence"] for e in api(q="card-99")] == [100]
    later = api(since=one[0]["created_at"][:19])
    assert later and all(e["sequence"] >= 42 for e in later)


def test_managers_see_the_envelope_and_cannot_search_what_they_cannot_see(pos, manager_client, settings):
    data = manager_client.get(_url("opsdash:api_module_events")).json()["events"]
    assert data and all("record" not in e["event"] and "meta" not in e["event"] for e in data)
    assert all(e["record_key"] and e["sequence"] and e["id"] for e in data)
    html = manager_client.get(_url()).content.decode()
    assert "card-" not in html and "payload is hidden" in html
    # a hidden field is never searchable: not by text, nor does the export leak it
    assert manager_client.get(_url("opsdash:api_module_events", q="card-99")).json()["events"] == []
    export = b"".join(manager_client.get(_url("opsdash:module_events_export", format="jsonl")).streaming_content)
    assert b"card-" not in export and export.count(b"\n") == 120
    assert manager_client.get(_url("opsdash:api_module_events", q="note-99-end")).json()["events"] == []
    settings.OPSDASH_MANAGER_VISIBLE_FIELDS = ("record.note",)
    found = manager_client.get(_url("opsdash:api_module_events", q="note-99-end")).json()["events"]
    assert [e["event"]["record.note"] for e in found] == ["note-99-end"] and "record.totalDue" not in found[0]["event"]


def test_the_export_streams_jsonl_and_formula_safe_csv_and_is_audited(pos, auditor_client, store):
    store.module("dar", "pos").append_event(_event(500, note="=HYPERLINK(1)") | {"table": "=cmd"})
    response = auditor_client.get(_url("opsdash:module_events_export", format="csv", table="=cmd"))
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["line", "offset", "sequence"] and len(rows) == 2
    assert rows[1][5] == "'=cmd"
    entry = AuditEntry.objects.get(action="export_events")
    assert (entry.actor, entry.outcome, entry.params["format"], entry.params["table"]) == (
        "auditor",
        "ok",
        "csv",
        "=cmd",
    )
    lines = b"".join(auditor_client.get(_url("opsdash:module_events_export")).streaming_content).splitlines()
    assert len(lines) == 121 and orjson.loads(lines[0])["sequence"] == 1


def test_a_rotated_day_is_browsed_by_its_listed_name_only(pos, operator_client):
    pos.rotate(today="2099-12-31")  # a day later than the meta's: the log is filed in history/events/
    pos.append_event(_event(1000))
    scan_root()
    files = operator_client.get(_url("opsdash:api_module_events")).json()["files"]
    assert files[0] == "live" and len(files) == 2
    day = files[1]
    rotated = operator_client.get(_url("opsdash:api_module_events", day=day)).json()
    assert rotated["file"] == day and len(rotated["events"]) == 50
    assert [
        e["record_key"]
        for e in operator_client.get(_url("opsdash:api_module_events", day=day, record="ord-3")).json()["events"]
    ] == ["ord-3"]
    for hostile in ("../../../../etc/passwd", "..%2f..%2fmeta", day + "/../x", "2025-13-45"):
        assert operator_client.get(_url(day=hostile)).status_code == 404


def test_a_duplicate_sequence_links_to_both_events_side_by_side(pos, operator_client):
    with open(pos.log_path, "ab") as f:
        for dup in ("evt-dup", "evt-dup-2"):  # three events share sequence 60: every one is shown
            f.write(orjson.dumps({"id": dup, "sequence": 60, "action": "module:update", "table": "t"}) + b"\n")
    scan_root()
    module_row = ModuleState.objects.get(module="pos")
    assert "log_sequence_duplicate" in module_row.codes
    page = operator_client.get(module_row.get_absolute_url()).content.decode()
    link = _url(sequence=60).replace("&", "&amp;")
    assert f'href="{link}"' in page
    html = operator_client.get(_url(sequence=60)).content.decode()
    assert "Events sharing sequence 60" in html and html.count("<figure>") == 3 and "evt-dup-2" in html


def test_a_bad_line_opens_highlighted_with_its_neighbours(pos, operator_client):
    with open(pos.log_path, "ab") as f:
        f.write(b'{"id": "broken", "sequence": \n')
    pos.append_event(_event(999))
    scan_root()
    module_row = ModuleState.objects.get(module="pos")
    bad = next(f for f in module_row.findings if f["code"] == "log_bad_line")
    offset = bad["lines"][0]["offset"]
    page = operator_client.get(module_row.get_absolute_url()).content.decode()
    assert f"?at={offset}" in page
    html = operator_client.get(_url(at=offset)).content.decode()
    assert f'id="at-{offset}" class="highlight" aria-current="true"' in html
    assert "{&quot;id&quot;: &quot;broken&quot;, &quot;sequence&quot;:" in html  # the line as written, escaped


def test_the_story_of_an_incident_with_a_note(pos, operator_client, manager_client, auditor_client):
    with open(pos.log_path, "ab") as f:
        f.write(b"not json at all\n")
    scan_root()
    incident = Incident.objects.get(module__module="pos")
    url = incident.get_absolute_url()
    page = operator_client.get(url).content.decode()
    assert "The scan first saw it" in page and "log_bad_line" in page and "not json at all" in page
    note = reverse("opsdash:incident_note", args=[incident.pk])
    assert manager_client.post(note, {"text": "me too"}).status_code == 403
    response = operator_client.post(note, {"text": "<b>checked</b> the till\nsecond line"})
    assert response.status_code == 302
    written = IncidentNote.objects.get()
    assert written.author == "operator"
    story = manager_client.get(url).content.decode()
    assert "&lt;b&gt;checked&lt;/b&gt; the till<br>second line" in story and "Add a note" not in story
    module_page = auditor_client.get(incident.module.get_absolute_url()).content.decode()
    assert "&lt;b&gt;checked&lt;/b&gt;" in module_page
    assert AuditEntry.objects.get(action="incident_note", outcome="refused").actor == "manager"
    entry = AuditEntry.objects.get(action="incident_note", outcome="ok")
    assert entry.actor == "operator" and "checked" in entry.detail and entry.params["incident"] == incident.pk
    exported = auditor_client.get(reverse("opsdash:api_audit_list") + "?format=csv")
    csv_text = b"".join(exported.streaming_content).decode()
    assert "incident_note" in csv_text and "the till" in csv_text
    assert operator_client.post(note, {"text": "   "}).status_code == 400
