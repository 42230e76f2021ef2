# The two commands of the README, and the checks they lean on.
.PHONY: serve test lint bench generate

serve:  ## set up and run the broker on 127.0.0.1:9092, data in ./data
	scripts/setup.sh
	.venv/bin/eventyard serve

test:  ## set up and run the whole test suite, lint and type checks included
	scripts/setup.sh test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	EVENTYARD_REFERENCE=1 EVENTYARD_POSTGRES=1 .venv/bin/pytest -q
	# The interop suite again, against a real Apache Kafka (see docs/reference-broker.md).
	EVENTYARD_REFERENCE=1 .venv/bin/pytest -q --target kafka tests/interop

bench:  ## the broker benchmark (see docs/benchmarks.md)
	scripts/setup.sh test
	.venv/bin/python bench/broker_throughput.py --kafka
	.venv/bin/python bench/latency.py --kafka
	.venv/bin/python bench/group_latency.py --kafka
	.venv/bin/python bench/provisioning.py

generate:  ## regenerate the protocol messages from the Kafka specs
	.venv/bin/python tools/generate_protocol.py
