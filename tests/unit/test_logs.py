"""The log formats, against what `lighten_log_records` leaves out of each record."""

from __future__ import annotations

from users_api.logs import LEFT_OUT, log_config


def test_no_format_writes_what_lightened_records_leave_out() -> None:
    """A field added to a format from `LEFT_OUT` would be empty: take it out of `LEFT_OUT`."""
    formatters = log_config("json")["formatters"]
    assert set(formatters["json"]["reserved_attrs"]) >= LEFT_OUT
    for name in ("text", "access_text"):
        written = formatters[name]["fmt"]
        assert not [field for field in LEFT_OUT if f"%({field})" in written]
