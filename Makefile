# hipush — `make run` starts a server on the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-12)

# The machine's services that .ci/run also tests against (own Redis db number; hipush's own tables).
EXTERNAL_REDIS ?= redis://127.0.0.1:6379/9
EXTERNAL_DATABASE ?= mysql+pymysql://root@127.0.0.1:3306/test

.PHONY: install run test test-external clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@echo "hipush starts on http://$${HIPUSH_BIND:-127.0.0.1:8080} (data in $${HIPUSH_DATA_DIR:-./var})."
	@echo "In another terminal, register an app and follow README.md 'Try it':"
	@echo "    $(BIN)/python app.py create-app myapp"
	@echo
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	$(BIN)/python -m pytest -q

test-external: install
	HIPUSH_TEST_REDIS_URL=$(EXTERNAL_REDIS) HIPUSH_TEST_DATABASE_URL=$(EXTERNAL_DATABASE) $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) var .pytest_cache
