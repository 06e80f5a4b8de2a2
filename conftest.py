"""Only the book's notebooks are tests; a notebook anywhere else (a test's data) is not."""

collect_ignore_glob = ["tests/**/*.ipynb", "build/**", ".venv/**", "venv/**"]
