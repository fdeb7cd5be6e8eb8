"""``rlagent/Web-v0``: MiniWoB++ web tasks in a real headless Chromium, as text.

- ``env``: the Gymnasium env (observation rendering, action dispatch, episode facts);
- ``page``: the page listing the model reads and the action grammar it writes;
- ``browser``: one Chromium per env, reused across episodes and never left running;
- ``tasks``: the task list, difficulty tiers and the task generator.
"""

from rlagent.envs.web.env import WebEnv
from rlagent.envs.web.tasks import DIFFICULTIES, TIERS, all_tasks, generate_task

__all__ = ["DIFFICULTIES", "TIERS", "WebEnv", "all_tasks", "generate_task"]
