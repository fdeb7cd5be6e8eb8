"""One headless Chromium driven through MiniWoB++'s Selenium layer, kept across episodes.

``MiniWoBEnvironment`` starts a browser per task; an LLM env switches task at every reset, so
this module owns the driver itself and points a ``miniwob`` ``SeleniumInstance`` (the package's
reset/observation/action code) at it, loading another task's page only when the task changes.

No browser outlives its owner: ``close()`` quits the driver and kills its process group, an
``atexit`` hook closes the ones still open, and a tiny reaper process kills the group when
Python dies without running either (SIGKILL, a crash, a killed Ray worker).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import weakref
from typing import Any

from miniwob.action import ActionSpaceConfig, ActionTypes
from miniwob.constants import WEBDRIVER_SPECIAL_KEYS
from miniwob.dom import DOMElement
from miniwob.selenium_instance import SeleniumInstance

# setTimeout fires at once for delays above 2**31 - 1 ms (about 24.8 days).
MAX_TIME_LIMIT_S = (2**31 - 1) / 1000
_CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--mute-audio",
    "--window-size=500,320",
)
_MODIFIER_KEYS = ("C-a", "C-c", "C-v", "C-x", "C-z")
# The keys press() may send, in MiniWoB's key syntax ("<Enter>", "a", "C-a").
ALLOWED_KEYS = tuple(WEBDRIVER_SPECIAL_KEYS) + tuple(chr(c) for c in range(33, 127)) + _MODIFIER_KEYS
# The MiniWoB action types this env uses, in the order the action dicts index them.
ACTION_CONFIG = ActionSpaceConfig(
    action_types=[ActionTypes.CLICK_ELEMENT, ActionTypes.PRESS_KEY, ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT],
    allowed_keys=ALLOWED_KEYS,
)
INSTALL_HINT = (
    "install them with `apt-get install -y chromium chromium-driver` (launch/setup.sh "
    "does this when run as root), or point MINIWOB_CHROME_BINARY and "
    "MINIWOB_CHROMEDRIVER at a Chrome/Chromium and its matching chromedriver"
)

_OPEN: weakref.WeakSet[Browser] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for browser in list(_OPEN):
        browser.close()


def find_chrome() -> tuple[str, str]:
    """Paths of the browser and its driver: MINIWOB_CHROME_BINARY / MINIWOB_CHROMEDRIVER, else
    ``chromium`` and ``chromedriver`` on PATH. Never downloads one."""
    binary = (
        os.environ.get("MINIWOB_CHROME_BINARY")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [
        name
        for name, path in (("chromium", binary), ("chromedriver", driver))
        if not path or not os.access(path, os.X_OK)
    ]
    if missing:
        raise RuntimeError(
            f"rlagent/Web-v0 needs a headless browser: {' and '.join(missing)} not found; {INSTALL_HINT}"
        )
    return binary, driver


def _start_reaper(pgid: int) -> subprocess.Popen:
    """A shell, in its own session, that blocks reading our pipe. A line (``close()``) lets it
    exit; end of file without one (this process died) makes it kill the browser's group."""
    return subprocess.Popen(
        ["/bin/sh", "-c", f"read _ || kill -KILL -{pgid} 2>/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class Browser:
    """A headless Chromium showing one MiniWoB task page at a time."""

    def __init__(self, time_limit_s: float):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.time_limit_ms = int(time_limit_s * 1000)
        binary, driver_path = find_chrome()
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in _CHROME_FLAGS:
            options.add_argument(flag)
        # chromedriver leads a new process group that its Chromium processes join, so one
        # killpg stops them all.
        self._service = Service(executable_path=driver_path, popen_kw={"start_new_session": True})
        self.driver = webdriver.Chrome(service=self._service, options=options)
        self.pgid = os.getpgid(self._service.process.pid)
        self._reaper = _start_reaper(self.pgid)
        self._owner = os.getpid()
        self.instance: SeleniumInstance | None = None
        self.task: str | None = None
        _OPEN.add(self)

    @property
    def session_id(self) -> str:
        return self.driver.session_id

    @property
    def pids(self) -> list[int]:
        """Processes of this browser's group (chromedriver and Chromium's)."""
        import psutil

        pids = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if os.getpgid(proc.info["pid"]) == self.pgid:
                    pids.append(proc.info["pid"])
        return pids

    def load(self, task: str) -> None:
        """Show ``task``'s page (a no-op when it is the page already shown)."""
        if task == self.task:
            return
        instance = SeleniumInstance(index=0, subdomain=task, headless=True)
        instance.driver = self.driver  # the package's episode logic, on our browser
        instance.record_screenshots = False
        self.driver.get(instance.url)
        if not self.driver.execute_script("return typeof core !== 'undefined';"):
            raise RuntimeError(f"MiniWoB page for {task!r} did not load ({instance.url})")
        instance.inner_width, instance.inner_height = self.driver.execute_script(
            "return [window.innerWidth, window.innerHeight];"
        )
        self.instance, self.task = instance, task

    def reset(self, task: str, seed: int) -> tuple[str, DOMElement]:
        """Start an episode of ``task``; returns the utterance and the page's element tree."""
        self.load(task)
        # The page's clock ends the episode after core.EPISODE_MAX_TIME (10-30 s by default),
        # far less than a model may think: it must be raised before the episode starts.
        self.driver.execute_script(f"core.EPISODE_MAX_TIME = {self.time_limit_ms};")
        obs, infos = [{}], [{}]
        self.instance.reset(obs, infos, seed)
        return obs[0]["utterance"], infos[0]["root_dom"]

    def perform(self, action: dict[str, Any]) -> None:
        """Run one MiniWoB action (a dict indexing ``ACTION_CONFIG``) on the page."""
        self.instance.perform(action, ACTION_CONFIG)

    def state(self) -> tuple[dict[str, Any], DOMElement | None]:
        """MiniWoB's episode metadata (done, raw_reward, reason) and, while the episode runs,
        the page's element tree."""
        meta = self.instance.get_metadata()
        if meta["done"]:
            return meta, None
        _, extra = self.instance.get_observation(use_cached_fields=True)
        return meta, extra["root_dom"]

    def close(self) -> None:
        """Quit the driver and make sure no process of its group is left. Idempotent."""
        _OPEN.discard(self)
        if self._reaper is None or os.getpid() != self._owner:  # a forked child owns nothing
            return
        with contextlib.suppress(Exception):
            self.driver.quit()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)  # stragglers quit() left behind
        with contextlib.suppress(OSError, ValueError):
            self._reaper.communicate(b"\n", timeout=5)  # a clean close: let the reaper go
        self._reaper = None
