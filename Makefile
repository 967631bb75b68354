.PHONY: run test lint format check-deploy

run:  ## venv, install, migrate, demo data, then web + worker + beat + sandbox until Ctrl-C
	bin/run

test:  ## the whole suite on PostgreSQL and Redis (throwaway ones unless DATABASE_URL/REDIS_URL)
	bin/test

lint:  ## what CI checks besides the tests
	bin/lint

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
