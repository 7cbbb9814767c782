# One word for each job. Every target first runs the idempotent setup, so a
# fresh Debian machine needs nothing else.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup demo test lint fmt bench

setup:
	@./scripts/setup.sh

# The end-to-end demo: builds a Cerebros-style model, serves it, prints timings.
demo: setup
	mix thunderbolt.demo

# The whole test suite: Rust crates on their own, then ExUnit (slow tests too).
test: setup
	cargo test --workspace --release
	MIX_ENV=test mix test --include slow

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	mix format --check-formatted
	MIX_ENV=test mix compile --force --warnings-as-errors

fmt:
	cargo fmt --all
	mix format

# Benchmarks print ratios measured side by side; see BENCHMARKS.md.
bench: setup
	mix run bench/runtime_bench.exs
