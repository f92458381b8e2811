# The two commands of the README. Both set everything up first (idempotent, cached).
.PHONY: setup demo test lint

setup:
	bash infra/bootstrap.sh

demo: setup
	.venv/bin/oneloc demo

test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest tests

lint: setup
	.venv/bin/python -m ruff check .
