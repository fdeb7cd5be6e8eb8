"""``rlagent/Web-v0``: act on a MiniWoB++ web page in a real headless Chromium.

The model reads the task's utterance and a listing of the page's elements, and replies with
actions: ``click(ref)``, ``type(ref, "text")``, ``press("Enter")``. The episode ends
(``terminated``) when the page ends it (the task was done, rightly or wrongly), or is
``truncated`` after ``max_turns`` replies. Env reward: 1.0 when MiniWoB's raw reward is > 0
(the task was solved; partial-credit tasks count any positive score), else 0.0.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import gymnasium
from miniwob.action import ActionTypes

from rlagent.envs.text import AnyText
from rlagent.envs.web.browser import ACTION_CONFIG, MAX_TIME_LIMIT_S, Browser
from rlagent.envs.web.page import ACTION_HELP, ActionError, WebAction, is_typeable, parse_actions, render_page
from rlagent.envs.web.tasks import (
    DIFFICULTIES,
    ENV_ID,
    MAX_SEED,
    check_task_name,
    generate_task,
    similar_task,
)

INSTRUCTIONS = (
    f"Do the task on the web page below. To act, {ACTION_HELP} (ref: an element's "
    "number in brackets). Several actions in one reply run in order. type() replaces "
    "the field's text."
)
_TYPE = {t: i for i, t in enumerate(ACTION_CONFIG.action_types)}


class WebEnv(gymnasium.Env[str, str]):
    """One MiniWoB++ page per episode, in one headless Chromium kept for the env's lifetime.

    Kwargs (all optional; unknown ones are ignored, since the sampler and ``gymnasium.make``
    pass the same env kwargs to ``generate_task`` and here):

    - ``task``: a MiniWoB task name ("click-button") to run every episode; ``tasks``: a list
      to draw from. Default: the tier of the drawn difficulty (see ``tasks.TIERS``).
    - ``max_turns`` (10): replies before the episode is ``truncated``.
    - ``max_actions`` (8): actions one reply may hold.
    - ``max_obs_chars`` (3000): length bound of one page listing.
    - ``time_limit_s`` (86400): the page's own episode clock, raised from MiniWoB's 10 s so that
      it does not run out while the model thinks.

    ``reset(options={"task": {"task": "click-button", "seed": 7}})`` runs that page; a task
    without a seed gets one from the env's RNG. Call ``close()`` to stop the browser.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    difficulties = DIFFICULTIES
    generate_task = staticmethod(generate_task)
    similar_task = staticmethod(similar_task)

    def __init__(
        self,
        task: str | None = None,
        tasks: list[str] | None = None,
        max_turns: int = 10,
        max_actions: int = 8,
        max_obs_chars: int = 3000,
        time_limit_s: float = 86400.0,
        max_text_length: int = 8192,
        **_ignored: Any,
    ):
        for name, value in (
            ("max_turns", max_turns),
            ("max_actions", max_actions),
            ("max_obs_chars", max_obs_chars),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{ENV_ID}: {name} must be an int >= 1, got {value!r}")
        if not 0 < time_limit_s <= MAX_TIME_LIMIT_S:
            raise ValueError(
                f"{ENV_ID}: time_limit_s must be in (0, {MAX_TIME_LIMIT_S:.0f}], got {time_limit_s!r}"
            )
        if max_obs_chars + len(INSTRUCTIONS) + 100 > max_text_length:
            raise ValueError(
                f"{ENV_ID}: max_obs_chars ({max_obs_chars}) leaves no room for the "
                f"instructions within max_text_length ({max_text_length})"
            )
        self.task = None if task is None else check_task_name(task)
        self.tasks = None if tasks is None else [check_task_name(t) for t in tasks]
        self.max_turns, self.max_actions = max_turns, max_actions
        self.max_obs_chars, self.time_limit_s = max_obs_chars, float(time_limit_s)
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self.browser: Browser | None = None  # started by the first reset
        self._name: str | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            rng = random.Random(int(self.np_random.integers(2**63)))
            task = generate_task(rng, rng.choice(self.difficulties), task=self.task, tasks=self.tasks)
        if not isinstance(task, dict):
            raise ValueError(
                f"{ENV_ID}: a task is a dict such as {{'task': 'click-button', 'seed': 7}}, got {task!r:.200}"
            )
        name = check_task_name(task.get("task", self.task))
        page_seed = task.get("seed")
        if page_seed is None:
            page_seed = int(self.np_random.integers(MAX_SEED))
        if isinstance(page_seed, bool) or not isinstance(page_seed, int):
            raise ValueError(f"{ENV_ID}: a task's seed must be an int, got {page_seed!r}")
        if self.browser is None:
            self.browser = Browser(self.time_limit_s)
        self._utterance, self._root = self.browser.reset(name, page_seed)
        self._name, self._turn, self._done = name, 0, False
        observation = f"{INSTRUCTIONS}\n{self._page()}"
        return observation, {
            "task_id": task.get("id"),
            "seed": page_seed,
            "action": [],
            **self._facts(False, None, 0.0, None),
        }

    def step(self, action: str):
        if self._name is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        self._turn += 1
        parsed: list[WebAction] = []
        error = None
        try:
            parsed = parse_actions(action if isinstance(action, str) else "", self.max_actions)
        except ActionError as err:
            error = str(err)
        meta = self._check_clock()
        for i, act in enumerate(parsed if error is None and not meta["done"] else []):
            error = self._impossible(act)
            if error is not None:
                error += f" (the {i} action(s) before it were done)" if i else ""
                break
            meta, self._root = self._run(act)
            if meta["done"]:
                break
        done = bool(meta["done"])
        success = done and float(meta["raw_reward"]) > 0
        truncated = not done and self._turn >= self.max_turns
        self._done = done or truncated
        # The final observation is never shown to the model: the episode is over.
        observation = "" if done else self._page()
        if error is not None and not done:
            observation = f"invalid action: {error}\n{observation}"
        info = self._facts(success, meta if done else None, float(meta["raw_reward"]), error)
        info["action"] = [a.as_dict() for a in parsed]
        return observation, (1.0 if success else 0.0), done, truncated, info

    def _check_clock(self) -> dict[str, Any]:
        """The page's state before acting: its clock may have ended the episode meanwhile."""
        meta, root = self.browser.state()
        if root is not None:
            self._root = root
        return meta

    def _impossible(self, act: WebAction) -> str | None:
        """Why ``act`` cannot run on the current page, or None."""
        if act.kind == "press":
            return None
        elements = {e.ref: e for e in self._root.subtree_elements if e.ref > 0}
        if act.ref not in elements:
            return f"no element [{act.ref}] on the page"
        if act.kind == "type" and not is_typeable(elements[act.ref]):
            return f"[{act.ref}] is a {elements[act.ref].tag}, not a text field; type() needs one"
        return None

    def _run(self, act: WebAction):
        """Perform ``act`` as MiniWoB actions; returns the page's metadata and element tree."""
        if act.kind == "click":
            self.browser.perform({"action_type": _TYPE[ActionTypes.CLICK_ELEMENT], "ref": act.ref})
        elif act.kind == "press":
            self.browser.perform(
                {
                    "action_type": _TYPE[ActionTypes.PRESS_KEY],
                    "key": ACTION_CONFIG.allowed_keys.index(act.text),
                }
            )
        else:
            field = {e.ref: e for e in self._root.subtree_elements}[act.ref]
            if field.value:  # replace, not append: focus, select all, delete, then type
                self.browser.perform({"action_type": _TYPE[ActionTypes.CLICK_ELEMENT], "ref": act.ref})
                for key in ("C-a", "<Backspace>"):
                    self.browser.perform(
                        {
                            "action_type": _TYPE[ActionTypes.PRESS_KEY],
                            "key": ACTION_CONFIG.allowed_keys.index(key),
                        }
                    )
            self.browser.perform(
                {
                    "action_type": _TYPE[ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT],
                    "ref": act.ref,
                    "text": act.text,
                }
            )
        meta, root = self.browser.state()
        return meta, root if root is not None else self._root

    def _page(self) -> str:
        return render_page(self._utterance, self._root, self.max_obs_chars)

    def _facts(
        self, success: bool, meta: dict[str, Any] | None, raw_reward: float, error: str | None
    ) -> dict[str, Any]:
        return {
            "task": self._name,
            "turn": self._turn,
            "success": success,
            "raw_reward": raw_reward,
            "reason": None if meta is None else meta.get("reason"),
            "invalid_action": error is not None,
            "error": error,
        }

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None
        super().close()
