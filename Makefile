.PHONY: run test lint format bench

run:  ## install and start Lapak on the embedded default (SQLite, in-process jobs)
	bash scripts/run

test:  ## install what the tests need and run the whole suite
	bash scripts/test

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench:  ## reproducible benchmarks; JSON lands in bench/results/
	.venv/bin/python -m bench
