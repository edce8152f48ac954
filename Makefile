# The two commands a new user needs: `make demo` and `make test`. Both set up what they need.
.PHONY: setup demo test kafka bench lint

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

kafka: setup
	.venv/bin/kafka-local

bench: setup
	.venv/bin/python -m bench --quick

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
