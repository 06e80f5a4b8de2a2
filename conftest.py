"""Only the book's notebooks are tests; a notebook anywhere else (a test's data) is not."""

collect_ignore_glob = ["tests/**/*.ipynb", "build/**", ".venv/**", "venv/**"]

# Hypothesis profiles: the default keeps the suite quick; `pytest --hypothesis-profile=soak`
# runs the property tests far longer (e.g. before a release).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("soak", max_examples=5000, deadline=None)
settings.load_profile("ci")
