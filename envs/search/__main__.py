"""``python -m rlagent.envs.search QA.jsonl TASKS.jsonl``: Search-R1 QA lines to task lines."""

import sys

from rlagent.envs.search.corpus import main

sys.exit(main())
