"""Every test gets its own $FRAMEMARK_HOME, so no test reads or writes the developer's real keys."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_framemark_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path_factory.mktemp("framemark-home")))
