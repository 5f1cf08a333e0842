"""Every test gets its own $FRAMEMARK_HOME, so no test reads or writes the developer's real keys."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_framemark_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path_factory.mktemp("framemark-home")))


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium for the real-browser tests. Missing, the test fails where the browser is required
    (``FRAMEMARK_REQUIRE_BROWSER=1``, which `.ci/run` sets after installing it) and is skipped, with the reason
    in the summary, on a developer machine without it."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("FRAMEMARK_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; FRAMEMARK_REQUIRE_BROWSER=1 says this machine must run the browser tests")
        pytest.skip(message)
    return found
