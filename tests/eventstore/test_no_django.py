"""eventstore runs on a POS server alone: importing it loads no Django module."""

from __future__ import annotations

from tests.eventstore.conftest import run_python


def test_import_eventstore_loads_no_django():
    code = (
        "import eventstore, eventstore.cli, sys\n"
        "from eventstore import EventStore\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    assert run_python(code).stdout.strip() == "ok"
