# The two commands a new user needs: `make demo` and `make test`. Both set up what they need.
.PHONY: setup demo test kafka bench quality lint

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

# Detection quality beside the peer tools on the development data sets: writes QUALITY.md.
# Installs the [eval] extra first (peers and aeon's data; large: torch comes with PyOD).
quality: setup
	.venv/bin/python -m pip install -q -e '.[eval]'
	.venv/bin/python -m bench quality

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
