"""Run the CLI in-process the way a user would, and check that an error is one line with its exit code."""

from __future__ import annotations

from click.testing import CliRunner

from edgekit.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_user_error(result, *fragments: str, code: int = 2):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
