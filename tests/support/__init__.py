"""What the tests share: helpers, fake parts where a real one cannot run, fixtures' builders.

``tests/conftest.py`` puts ``tests/`` on ``sys.path``, so these import as ``support.<name>``;
Ray's worker processes (whose working directory is the repository) import them as
``tests.support.<name>``.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
