# pg_trickle: two commands for everything.
#   make run    build PostgreSQL 18 + pg_trickle, start a cluster, show a stream table
#   make test   run every test suite
SHELL := /bin/bash
.PHONY: setup install run stop psql test test-unit bench tpch clean-cluster

setup:
	@bash scripts/setup.sh

install: setup
	@bash scripts/install.sh

run: install
	@bash scripts/run.sh

stop:
	@bash scripts/cluster.sh stop "$$(. scripts/env.sh && echo $$PGT_RUN_PGDATA)"

psql:
	@. scripts/env.sh && exec "$$PGT_PREFIX/bin/psql" -h 127.0.0.1 -p "$$PGT_RUN_PORT" -U postgres demo

test: setup
	@bash scripts/test.sh

# Only the pure Rust unit tests (no server needed once setup has run).
test-unit: setup
	@cargo test --lib

# Drop the `make run` cluster's data (stops it first).
clean-cluster: stop
	@rm -rf "$$(. scripts/env.sh && echo $$PGT_RUN_PGDATA)"

# Performance, as ratios against baselines measured in the same run.
bench: setup
	@bash scripts/bench.sh

# TPC-H: the 22 queries as stream tables, FULL vs DIFFERENTIAL per query at
# scale factor PGT_TPCH_SF (default 1).
tpch: setup
	@bash scripts/tpch.sh
