"""layout: the path rules and the Node server's file names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventstore import InvalidName, layout


@pytest.mark.parametrize("name", ["dar", "pos", "branch-01", "كاشير", "a" * 128, "x.y"])
def test_check_name_accepts_plain_names(name):
    assert layout.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "../etc", "a\\b", "a\x00b", "tab\tname", "a" * 129, None, 3, b"dar"]
)
def test_check_name_refuses_unsafe_names(name):
    with pytest.raises(InvalidName):
        layout.check_name(name)


def test_live_and_history_dirs_follow_the_node_layout(tmp_path):
    assert layout.live_dir(tmp_path, "dar", "pos") == tmp_path / "dar" / "modules" / "pos" / "live"
    assert layout.history_dir(tmp_path, "dar", "pos") == tmp_path / "dar" / "modules" / "pos" / "history" / "events"


def test_live_dir_refuses_traversal(tmp_path):
    with pytest.raises(InvalidName):
        layout.live_dir(tmp_path, "..", "pos")
    with pytest.raises(InvalidName):
        layout.live_dir(tmp_path, "dar", "pos/../../x")


def test_backup_names_round_trip_with_their_time():
    ms = 1761567827665
    name = layout.meta_backup_name(ms)
    assert name == "events.meta.json.corrupted.1761567827665.bak"
    assert layout.backup_kind(name) == "meta"
    assert layout.backup_time(name) == datetime.fromtimestamp(ms / 1000, tz=UTC)
    frag = layout.log_fragment_name(ms)
    assert frag == "events.log.torn.1761567827665.bak"
    assert layout.backup_kind(frag) == "log-fragment"


@pytest.mark.parametrize(
    "name",
    [
        "events.meta.json",
        "events.meta.json.corrupted.bak",
        "events.meta.json.corrupted.12x.bak",
        "data.json",
        "events.rejected.log",
    ],
)
def test_other_files_are_not_backups(name):
    assert layout.backup_kind(name) is None
    assert layout.backup_time(name) is None


def test_temp_name_matches_the_node_pattern():
    name = layout.temp_name(1761567827665, "k3x9")
    assert name == "events.meta.json.tmp.1761567827665.k3x9"
    assert layout.temp_time_ms(name) == 1761567827665
    assert layout.temp_time_ms("events.meta.json") is None


def test_rotated_log_name_replaces_colons_and_dots():
    assert (
        layout.rotated_log_name("2025-10-27", "2025-10-27T12:23:47.663Z") == "2025-10-27-2025-10-27T12-23-47-663Z.log"
    )


def test_rotated_log_name_refuses_a_slash_in_the_stamp():
    with pytest.raises(InvalidName):
        layout.rotated_log_name("2025-10-27", "../../etc/passwd")


def test_is_inside_resolves_symlinks(tmp_path: Path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert layout.is_inside(root, root / "a")
    assert layout.is_inside(root, root)
    assert not layout.is_inside(root, root / "link")
    assert not layout.is_inside(root, root / ".." / "outside")


def test_a_name_that_is_not_utf8_is_refused_and_shown_printable():
    import os

    name = os.fsdecode(b"bad\xff\xfe")
    with pytest.raises(InvalidName, match=r"'bad\\xff\\xfe' is not valid UTF-8"):
        layout.check_name(name)
    with pytest.raises(InvalidName):
        layout.check_name("a\ud800b")  # a lone surrogate typed in
    assert layout.printable(name) == "bad\\xff\\xfe"
    assert layout.printable("dar\u202eevil\x85\u3000\u00e9 ok") == "dar\\u202eevil\\u0085\\u3000\u00e9 ok"
    assert layout.printable("\U000e0001x") == "\\U000e0001x"
